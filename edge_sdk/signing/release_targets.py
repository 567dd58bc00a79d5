"""A release as TUF targets: where each profile's variant lives, the targets (with chunk lists
and the release record) of one bundle, and merging a release into the repository's targets.

Every file of a bundle is a target with its length, sha256 and
``custom = {"chunks": [[sha256, length], ...]}`` (``edge_sdk.core.chunking``, in file order):
devices fetch content-addressed chunks, not files. The manifest's target also carries
``custom["release"]`` (name, version, profile, runtime, member files, total bytes) so a device
can refuse a wrong-profile or oversized release before fetching anything else.

A release (model name and version) holds one *variant* per hardware profile, each a whole
bundle. The first variant published of a release lives at ``<model>/<version>/<file>`` (the
layout every agent reads, including those from before variants existed); each further profile's
at ``<model>/<version>/<profile>/<file>``. A device looks for its own profile's directory first,
then at the first variant, whose release record must name its profile (see
``agent.update.transfer``). Chunks are content-addressed, so bytes two variants share are
stored and sent once.

Pure functions of python-tuf ``TargetFile`` mappings; :mod:`edge_sdk.signing.repository` signs
and writes what they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# The ignore: python-tuf re-exports these names without __all__, which mypy --strict (no
# implicit re-export) flags; the names and their types still resolve.
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge_sdk.core import chunking
from edge_sdk.core.bundle import MANIFEST, SIGNATURES, Bundle, check_name, format_version, sha256
from edge_sdk.core.profiles import PROFILE_ID
from edge_sdk.errors import InputError, TamperedError

CHUNKS = "chunks"
RELEASE = "release"
CUSTOM = "custom"  # the target field python-tuf keeps and signs over, holding the two above
HASH = "sha256"


def release_prefix(name: str, version: int) -> str:
    """Where a release's first variant lives, and the prefix of all its targets."""
    return f"{name}/{version}/"


def variant_prefix(name: str, version: int, profile: str) -> str:
    """Where a further profile's variant of a release lives (the first one is at
    :func:`release_prefix`)."""
    return f"{name}/{version}/{profile}/"


def _under(paths: Iterable[str], prefix: str) -> list[str]:
    """The paths directly in ``prefix`` (a variant's own files, not those of the variants
    below a release's first one)."""
    return [p for p in paths if p.startswith(prefix) and "/" not in p[len(prefix) :]]


def release_record(target: TargetFile | None) -> dict[str, Any] | None:
    """The signed ``custom["release"]`` of a manifest target (see :func:`release_targets`), or
    None when ``target`` is None or carries none."""
    record = (target.unrecognized_fields.get(CUSTOM) or {}).get(RELEASE) if target else None
    return dict(record) if isinstance(record, dict) else None


def variants(targets: Mapping[str, TargetFile], name: str, version: int) -> dict[str, str]:
    """profile -> target prefix of every variant of ``name`` v``version`` in ``targets``."""
    base = release_prefix(name, version)
    found: dict[str, str] = {}
    first = release_record(targets.get(base + MANIFEST))
    if first is not None:
        found[str(first.get("profile", ""))] = base
    suffix = "/" + MANIFEST
    for path in targets:
        if path.startswith(base) and path.endswith(suffix):
            profile = path[len(base) : -len(suffix)]
            if profile and "/" not in profile and profile not in found:
                found[profile] = variant_prefix(name, version, profile)
    return found


def placement(targets: Mapping[str, TargetFile], name: str, version: int, profile: str) -> str:
    """The prefix a ``profile`` variant of the release goes to: where it already is, else the
    release's own directory for its first variant, else its profile's directory."""
    existing = variants(targets, name, version)
    if profile in existing:
        return existing[profile]
    return variant_prefix(name, version, profile) if existing else release_prefix(name, version)


def release_files(bundle: Bundle) -> dict[str, bytes]:
    """Every file of the bundle by its member name, the build-time signatures included."""
    files = bundle.signed_files()
    if bundle.signatures is not None:
        files[SIGNATURES] = bundle.signatures
    return files


def check_release(bundle: Bundle) -> None:
    """Refuse a bundle whose name, profile or version cannot be a repository path, or whose
    artifact does not match its manifest, before anything is signed."""
    manifest = bundle.manifest
    try:
        check_name(manifest.name)
    except InputError as e:
        raise InputError(
            f"bundle model name {manifest.name!r} cannot be a repository path; rebuild it "
            "with a valid --name"
        ) from e
    if not PROFILE_ID.match(manifest.profile):
        raise InputError(
            f"bundle {manifest.name} is for profile {manifest.profile[:80]!r}, which cannot be a "
            "repository path; rebuild it with a profile id of letters, digits, '.', '_' or '-'"
        )
    if manifest.version < 1:
        raise InputError(
            f"bundle {manifest.name} has version {manifest.version}; rebuild it with a "
            "positive --version"
        )
    if sha256(bundle.artifact) != manifest.artifact_sha256:
        raise TamperedError(
            f"bundle {manifest.name} {format_version(manifest.version)}: the artifact does not "
            "match the sha256 "
            "in its manifest; do not publish it, rebuild the bundle"
        )


def release_targets(
    bundle: Bundle, chunks: Mapping[str, list[chunking.Chunk]], prefix: str | None = None
) -> dict[str, TargetFile]:
    """The TUF targets for one bundle under ``prefix`` (default: the release's own directory);
    ``chunks`` is ``chunking.split`` of each member file."""
    manifest, files = bundle.manifest, release_files(bundle)
    if prefix is None:
        prefix = release_prefix(manifest.name, manifest.version)
    result = {}
    for name, data in sorted(files.items()):
        custom: dict[str, Any] = {CHUNKS: [[c.sha256, c.length] for c in chunks[name]]}
        if name == MANIFEST:
            custom[RELEASE] = {
                **manifest.identity(),
                "files": sorted(files),
                "bytes": sum(len(d) for d in files.values()),
            }
        path = prefix + name
        result[path] = TargetFile(len(data), {HASH: sha256(data)}, path, {CUSTOM: custom})
    return result


def _digests(targets: Mapping[str, TargetFile]) -> dict[str, tuple[int, str | None]]:
    return {path: (t.length, t.hashes.get(HASH)) for path, t in targets.items()}


def merge_release(
    current: Mapping[str, TargetFile],
    release: Mapping[str, TargetFile],
    name: str,
    version: int,
    prefix: str | None = None,
) -> dict[str, TargetFile] | None:
    """``current`` with ``release`` (one variant, under ``prefix``: see :func:`placement`)
    added; None if it is already there with the same bytes.

    Releases are immutable: devices cache chunks and trust a version number once, so different
    bytes under a published name/version and profile is refused rather than replaced. Another
    profile's variant of a published release is added beside it.
    """
    prefix = release_prefix(name, version) if prefix is None else prefix
    published = _digests({p: current[p] for p in _under(current, prefix)})
    if not published:
        return {**current, **release}
    wanted = _digests(release)
    if published == wanted:
        return None
    differing = sorted(
        p for p in published.keys() | wanted.keys() if published.get(p) != wanted.get(p)
    )
    if differing == [prefix + SIGNATURES]:
        # The same files signed again (after `keys rotate --revoke`): the release is unchanged,
        # its signatures are new. Devices install it over the copy they hold.
        return {**current, **release}
    raise InputError(
        f"{name} version {format_version(version)} is already published with a different "
        f"{differing[0].removeprefix(prefix)} for this profile; releases are immutable: bump the "
        "version and rebuild"
    )


def chunk_ids(targets: Iterable[TargetFile]) -> set[str]:
    """The sha256 of every chunk the targets' ``custom["chunks"]`` lists."""
    return {
        str(entry[0])
        for target in targets
        for entry in (target.unrecognized_fields.get(CUSTOM) or {}).get(CHUNKS, [])
    }
