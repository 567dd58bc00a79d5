"""The fleet's TUF repository on the operator's machine: what devices' ngclient refreshes against.

Layout (``REPO/metadata/`` is published file by file as retained MQTT messages)::

    metadata/N.root.json        every root version, copied from the keyring: clients walk them
    metadata/timestamp.json     names the current snapshot: the commit point
    metadata/V.snapshot.json    consistent snapshots (the keyring's root sets consistent_snapshot),
    metadata/V.targets.json     named by version as ngclient requests them; the latest
                                KEEP_VERSIONS of each are kept for clients mid-refresh
    metadata/V.<model>-v<N>.json  one delegated targets role per release (release_roles.py):
                                a device fetches only the one it installs

There is no state file: timestamp.json -> V.snapshot.json -> V.targets.json (and the roles it
delegates to) *is* the state.
timestamp.json is written last, so a crash part-way leaves the previous state in force and the
newer files it left behind are simply overwritten by the next change.

Every file of a bundle is a target with its length, sha256 and
``custom = {"chunks": [[sha256, length], ...]}`` (``edge_sdk.core.chunking``, in file order):
devices fetch content-addressed chunks, not files, so the repository stores metadata only and
hands the chunks to the caller in a :class:`PublishSet`. The manifest's target also carries
``custom["release"]`` (name, version, profile, runtime, member files, total bytes) so a device
can refuse a wrong-profile or oversized release before fetching anything else.

A release (model name and version) holds one *variant* per hardware profile, each a whole
bundle. The first variant published of a release lives at ``<model>/<version>/<file>`` (the
layout every agent reads, including those from before variants existed); each further profile's
at ``<model>/<version>/<profile>/<file>``. A device looks for its own profile's directory first,
then at the first variant, whose release record must name its profile (see
``agent.update.transfer``).
Chunks are content-addressed, so bytes two variants share are stored and sent once.

The decisions (what to re-sign, versions, expiries) are pure functions of the loaded state and
the clock; :class:`Repository` is the I/O around them. Everything is signed in memory before
the first write, so a failed signing leaves the directory unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

# The ignores: python-tuf and securesystemslib re-export these names without __all__, which
# mypy --strict (no implicit re-export) flags; the names and their types still resolve.
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from edge_sdk.core import chunking
from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.bundle import MANIFEST, SIGNATURES, Bundle, check_name, format_version, sha256
from edge_sdk.core.profiles import PROFILE_ID
from edge_sdk.core.trust import TrustRoot
from edge_sdk.errors import InputError, KeyFileError, OutputError, TamperedError, ThresholdError
from edge_sdk.signing import release_roles
from edge_sdk.signing.keys import load_public_key, load_signer, load_trust_root

METADATA_DIR = "metadata"
KEEP_VERSIONS = 3
# Devices treat an expired timestamp as "the repository is gone or frozen": a broker that keeps
# serving stale retained messages (or an attacker replaying them) can hide new releases and key
# revocations for at most a day. Snapshot and targets change only when the operator publishes;
# their longer lives mean the routine (daily or more often) refresh re-signs only the timestamp.
LIFETIMES = {
    Timestamp.type: timedelta(days=1),
    Snapshot.type: timedelta(days=7),
    Targets.type: timedelta(days=30),
}
CHUNKS = "chunks"
RELEASE = "release"
_CUSTOM = "custom"
_HASH = "sha256"
_TARGETS_META = "targets.json"  # the key of targets metadata in snapshot.meta, per the spec
_TIMESTAMP = "timestamp.json"
# N.root.json, V.snapshot.json, V.targets.json and V.<model>-v<N>.json (a release's role).
_VERSIONED = re.compile(r"^(\d+)\.([A-Za-z0-9][A-Za-z0-9._-]*)\.json\Z")
_ONLINE_KEY = re.compile(r"^online-(\d+)\.key\Z")
# Compact JSON: every device fetches these over MQTT; signatures cover canonical JSON anyway.
_JSON = JSONSerializer(compact=True)
_T = TypeVar("_T", Timestamp, Snapshot, Targets)
Sign = Callable[[Metadata[Any]], bytes]


@dataclass(frozen=True)
class PublishSet:
    """What must reach the broker after a change.

    ``metadata`` is every file under metadata/ in publish order (roots, targets, snapshot,
    timestamp last, so no client sees a timestamp naming a snapshot not yet published).
    ``chunks`` maps sha256 -> bytes (after ``add_bundle``: every chunk of that bundle). The
    ``removed_*`` names are retained messages to clear: pruned metadata files, and chunks no
    remaining release uses (after ``remove_release``).
    """

    metadata: dict[str, bytes]
    chunks: dict[str, bytes] = field(default_factory=dict)
    removed_metadata: tuple[str, ...] = ()
    removed_chunks: tuple[str, ...] = ()


# --- pure core -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """The repository as loaded; the Metadata objects are python-tuf's, treat as read-only."""

    roots: tuple[bytes, ...]  # roots[i] is (i + 1).root.json
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]
    delegated: dict[str, Metadata[Targets]] = field(default_factory=dict)  # role -> its metadata

    def all_targets(self) -> dict[str, TargetFile]:
        return release_roles.flatten(
            self.targets.signed, {r: md.signed for r, md in self.delegated.items()}
        )


def _utc(moment: datetime) -> datetime:
    # python-tuf stores UTC only; a naive datetime is taken to be UTC already.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def release_prefix(name: str, version: int) -> str:
    return f"{name}/{version}/"


def variant_prefix(name: str, version: int, profile: str) -> str:
    """Where a further profile's variant of a release lives (the first one is at
    :func:`release_prefix`)."""
    return f"{name}/{version}/{profile}/"


def _under(paths: Iterable[str], prefix: str) -> list[str]:
    """The paths directly in ``prefix`` (a variant's own files, not those of the variants
    below a release's first one)."""
    return [p for p in paths if p.startswith(prefix) and "/" not in p[len(prefix) :]]


def _record_of(target: TargetFile | None) -> dict[str, Any] | None:
    record = (target.unrecognized_fields.get(_CUSTOM) or {}).get(RELEASE) if target else None
    return dict(record) if isinstance(record, dict) else None


def variants(targets: Mapping[str, TargetFile], name: str, version: int) -> dict[str, str]:
    """profile -> target prefix of every variant of ``name`` v``version`` in ``targets``."""
    base = release_prefix(name, version)
    found: dict[str, str] = {}
    first = _record_of(targets.get(base + MANIFEST))
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


def _check_release(bundle: Bundle) -> None:
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
        result[path] = TargetFile(len(data), {_HASH: sha256(data)}, path, {_CUSTOM: custom})
    return result


def _digests(targets: Mapping[str, TargetFile]) -> dict[str, tuple[int, str | None]]:
    return {path: (t.length, t.hashes.get(_HASH)) for path, t in targets.items()}


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


MIRRORS = "mirrors"  # agent.update.transfer.MIRRORS


def with_mirrors(
    current: Mapping[str, TargetFile], name: str, version: int, mirrors: list[str]
) -> dict[str, TargetFile] | None:
    """``current`` with ``custom["mirrors"] = mirrors`` on every manifest target of the
    release (each variant's); None when nothing changes. The mirror list is signed with the
    targets, so a device fetches only from stores the fleet's keys named."""
    prefix = release_prefix(name, version)
    result = dict(current)
    changed = False
    for path, target in current.items():
        if not (path.startswith(prefix) and path.rsplit("/", 1)[-1] == MANIFEST):
            continue
        custom = dict(target.unrecognized_fields.get(_CUSTOM) or {})
        if custom.get(MIRRORS, []) == mirrors:
            continue
        if mirrors:
            custom[MIRRORS] = list(mirrors)
        else:
            custom.pop(MIRRORS, None)
        result[path] = TargetFile(target.length, dict(target.hashes), path, {_CUSTOM: custom})
        changed = True
    return result if changed else None


def chunk_ids(targets: Iterable[TargetFile]) -> set[str]:
    """The sha256 of every chunk the targets' ``custom["chunks"]`` lists."""
    return {
        str(entry[0])
        for target in targets
        for entry in (target.unrecognized_fields.get(_CUSTOM) or {}).get(CHUNKS, [])
    }


def _meta_file(version: int, data: bytes) -> MetaFile:
    # Length and hash, not just version: the client then caps the download at the exact length
    # and a swapped file fails before it is even parsed.
    return MetaFile(version=version, length=len(data), hashes={_HASH: sha256(data)})


def _stale(md: Metadata[Any], root: Root, now: datetime) -> bool:
    """Re-sign when the root's current keys no longer meet the role's threshold (a rotation
    revoked a signer) or when less than half the role's lifetime is left: a refresh run at
    least daily then always renews in time, and never churns files that are still fresh."""
    role = md.signed.type
    if not root.get_verification_result(role, md.signed_bytes, md.signatures).verified:
        return True
    remaining: timedelta = md.signed.expires - now
    return remaining < LIFETIMES[role] / 2


def _genesis(sign: Sign, now: datetime, expires: datetime | None) -> dict[str, bytes]:
    """Version 1 of targets (empty), snapshot and timestamp, in write order."""
    at = {role: expires or now + life for role, life in LIFETIMES.items()}
    targets = sign(Metadata(Targets(version=1, expires=at[Targets.type])))
    snapshot = sign(
        Metadata(
            Snapshot(1, expires=at[Snapshot.type], meta={_TARGETS_META: _meta_file(1, targets)})
        )
    )
    timestamp = sign(
        Metadata(Timestamp(1, expires=at[Timestamp.type], snapshot_meta=_meta_file(1, snapshot)))
    )
    return {"1.targets.json": targets, "1.snapshot.json": snapshot, _TIMESTAMP: timestamp}


def _plan(
    state: _State,
    root: Root,
    sign: Sign,
    *,
    now: datetime,
    expires: datetime | None = None,
    targets: dict[str, TargetFile] | None = None,
    resign_all: bool = False,
    force_timestamp: bool = False,
) -> dict[str, bytes]:
    """The metadata files a change writes (name -> bytes, in write order); empty if none.

    A role gets a new version when its content changes (``targets``), when the role it lists
    got one (targets -> snapshot -> timestamp), on ``resign_all`` (a new root: sign with its
    keys) or when :func:`_stale`. ``expires`` overrides every new expiry (tests make expired
    metadata with a past one).
    """
    at = {role: expires or now + life for role, life in LIFETIMES.items()}
    files: dict[str, bytes] = {}
    wanted = release_roles.split(state.all_targets() if targets is None else targets)
    old_meta = state.snapshot.signed.meta
    meta: dict[str, MetaFile] = {}
    for role, role_targets in sorted(wanted.items()):
        old = state.delegated.get(role)
        key = f"{role}.json"
        if (
            old is None
            or old.signed.targets != role_targets
            or resign_all
            or _stale(old, root, now)
        ):
            # Past any version the snapshot ever listed: a release removed and published again
            # must not look like a rollback to a device that saw it before.
            version = old_meta[key].version + 1 if key in old_meta else 1
            new = Targets(version=version, expires=at[Targets.type], targets=role_targets)
            data = sign(Metadata(new))
            files[f"{version}.{key}"] = data
            meta[key] = _meta_file(version, data)
        else:
            meta[key] = old_meta[key]
    for key, listed in old_meta.items():
        # A removed release's role stays listed (ngclient refuses a snapshot that drops a file
        # it listed before); it is no longer delegated, so no device fetches it.
        meta.setdefault(key, listed)
    top = state.targets.signed
    delegations = release_roles.delegations(root, wanted)
    if (
        top.targets
        or top.delegations != delegations
        or resign_all
        or _stale(state.targets, root, now)
    ):
        new_top = Targets(
            version=top.version + 1,
            expires=at[Targets.type],
            targets={},
            delegations=delegations,
        )
        data = sign(Metadata(new_top))
        files[f"{new_top.version}.targets.json"] = data
        meta[_TARGETS_META] = _meta_file(new_top.version, data)
    else:
        meta[_TARGETS_META] = old_meta[_TARGETS_META]
    snapshot_meta = state.timestamp.signed.snapshot_meta
    # A role signed anew, or one gone (a removed release): the snapshot lists them all.
    if files or meta != old_meta or resign_all or _stale(state.snapshot, root, now):
        version = state.snapshot.signed.version + 1
        data = sign(Metadata(Snapshot(version, expires=at[Snapshot.type], meta=meta)))
        files[f"{version}.snapshot.json"] = data
        snapshot_meta = _meta_file(version, data)
    if files or force_timestamp or _stale(state.timestamp, root, now):
        version = state.timestamp.signed.version + 1
        files[_TIMESTAMP] = sign(
            Metadata(Timestamp(version, expires=at[Timestamp.type], snapshot_meta=snapshot_meta))
        )
    return files


def _signing(root: Root, signers: Mapping[str, list[Signer]]) -> Sign:
    """Sign metadata with its role's signers and prove the root accepts the result, so the
    repository never publishes what every device would reject."""

    def sign(md: Metadata[Any]) -> bytes:
        role = md.signed.type
        for signer in signers[role]:
            md.sign(signer, append=True)
        try:
            root.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as e:
            raise ThresholdError(
                f"signing {role} v{md.signed.version} met no threshold of root "
                f"v{root.version} ({e}); check that each online-N.pub matches its .key"
            ) from e
        return md.to_bytes(_JSON)

    return sign


# --- I/O -------------------------------------------------------------------------------------


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"{path} is missing; restore the {what} from a backup") from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e


def _load(path: Path, kind: type[_T]) -> Metadata[_T]:
    data = _read_bytes(path, "repository")
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except DeserializationError as e:
        raise InputError(f"{path} is not TUF metadata ({e}); restore it from a backup") from e
    if not isinstance(md.signed, kind):
        raise InputError(f"{path} holds {md.signed.type} metadata, not {kind.type}; restore it")
    return md


def _walk_roots(keyring: Path, have: tuple[bytes, ...]) -> tuple[TrustRoot, list[bytes]]:
    """The keyring's current root, reached from the repository's newest (or from 1.root.json)
    the way a client walks N.root.json, and the root files the repository lacks."""
    latest = load_trust_root(keyring)

    def read(version: int) -> bytes:
        path = keyring / f"{version}.root.json"
        if not path.is_file():
            raise KeyFileError(
                f"{path} is missing: clients need every root version; restore it to the keyring"
            )
        return path.read_bytes()

    if have:
        if read(len(have)) != have[-1]:
            raise KeyFileError(
                f"{keyring} is not this repository's keyring (its root v{len(have)} differs); "
                "pass the keyring the repository was created with"
            )
        trust, added = TrustRoot.from_bytes(have[-1], f"{len(have)}.root.json"), []
    else:
        first = read(1)
        trust, added = TrustRoot.from_bytes(first, str(keyring / "1.root.json")), [first]
    if latest.version < trust.version:
        raise KeyFileError(
            f"{keyring} holds root v{latest.version}, older than the repository's "
            f"v{trust.version}; pass the keyring the repository was created with"
        )
    while trust.version < latest.version:
        data = read(trust.version + 1)
        trust = trust.next_root(data, str(keyring / f"{trust.version + 1}.root.json"))
        added.append(data)
    if not trust.root.consistent_snapshot:
        raise KeyFileError(
            f"root v{trust.version} in {keyring} has consistent_snapshot off, but this repository "
            "publishes versioned snapshots; use a keyring made by `edge-sdk keys init`"
        )
    return trust, added


def online_signers(keyring: Path, root: Root) -> dict[str, list[Signer]]:
    """Up to each online role's threshold of the keyring's online-N.key files that ``root``
    trusts for it, newest key first (older keys are the ones a rotation revokes next)."""
    numbered = sorted(
        ((int(m[1]), p) for p in keyring.glob("online-*.key") if (m := _ONLINE_KEY.match(p.name))),
        reverse=True,
    )
    # The .pub files name a key without decrypting it; a mismatched pair fails in _signing().
    keyids = {
        p: load_public_key(p.with_suffix(".pub") if p.with_suffix(".pub").exists() else p).keyid
        for _, p in numbered
    }
    loaded: dict[Path, Signer] = {}
    result = {}
    for role in (Targets.type, Snapshot.type, Timestamp.type):
        delegation = root.roles[role]
        usable = [p for _, p in numbered if keyids[p] in delegation.keyids]
        if len(usable) < delegation.threshold:
            raise KeyFileError(
                f"{keyring} has {len(usable)} of the {delegation.threshold} online key(s) root "
                f"v{root.version} trusts for {role}; bring back the online-N.key files or "
                "rotate keys (`edge-sdk keys rotate`)"
            )
        for path in usable[: delegation.threshold]:
            if path not in loaded:
                loaded[path] = load_signer(path)
        result[role] = [loaded[p] for p in usable[: delegation.threshold]]
    return result


def _publish_order(name: str) -> tuple[int, int]:
    # Roots, then the release roles and targets, then the snapshot that lists them; the
    # timestamp last.
    kind_rank = {"root": 0, "snapshot": 2}
    match = _VERSIONED.match(name)
    return (kind_rank.get(match[2], 1), int(match[1])) if match else (3, 0)


@dataclass(frozen=True)
class Repository:
    """A repository directory and the keyring that signs it. Holds no state of its own: every
    call reads the directory afresh, so two Repository objects never disagree."""

    directory: Path
    keyring: Path

    @property
    def metadata_dir(self) -> Path:
        return self.directory / METADATA_DIR

    @classmethod
    def create(
        cls, directory: Path, keyring: Path, *, expires: datetime | None = None
    ) -> Repository:
        """A new repository: the keyring's root history and version 1 of everything else."""
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise OutputError(
                f"{directory} is not an empty directory; choose a new path for the repository"
            )
        trust, roots = _walk_roots(keyring, ())
        sign = _signing(trust.root, online_signers(keyring, trust.root))
        files = {f"{n}.root.json": data for n, data in enumerate(roots, start=1)}
        files |= _genesis(sign, datetime.now(UTC), _utc(expires) if expires else None)
        repo = cls(directory, keyring)
        try:
            repo.metadata_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {repo.metadata_dir}: {e.strerror}") from e
        repo._write(files)
        return repo

    @classmethod
    def open(cls, directory: Path, keyring: Path) -> Repository:
        repo = cls(directory, keyring)
        if not (repo.metadata_dir / _TIMESTAMP).is_file():
            raise InputError(
                f"{directory} is not an edge-sdk repository (no {METADATA_DIR}/{_TIMESTAMP}); "
                "pass the directory given to Repository.create"
            )
        _walk_roots(keyring, repo._state().roots)  # a wrong keyring fails now, not mid-publish
        return repo

    # --- queries ---

    def releases(self) -> list[tuple[str, int]]:
        found = set()
        for path in self._state().all_targets():
            name, version, _ = path.split("/", 2)
            found.add((name, int(version)))
        return sorted(found)

    def release_record(self, name: str, version: int) -> dict[str, Any] | None:
        """The signed release record (profile, runtime, files, bytes) of the first variant of
        ``name`` v``version``, or ``None`` when that release is not in the repository."""
        targets = self._state().all_targets()
        return _record_of(targets.get(f"{release_prefix(name, version)}{MANIFEST}"))

    def release_variants(self, name: str, version: int) -> dict[str, dict[str, Any]]:
        """profile -> signed release record of every variant of ``name`` v``version`` (empty
        when that release is not in the repository)."""
        targets = self._state().all_targets()
        found = {}
        for profile, prefix in variants(targets, name, version).items():
            record = _record_of(targets.get(prefix + MANIFEST))
            if record is not None:
                found[profile] = record
        return found

    def metadata_files(self) -> dict[str, bytes]:
        """Every published file under metadata/, in publish order (see PublishSet)."""
        names = [
            p.name
            for p in self.metadata_dir.iterdir()
            if p.is_file() and (p.name == _TIMESTAMP or _VERSIONED.match(p.name))
        ]
        return {n: (self.metadata_dir / n).read_bytes() for n in sorted(names, key=_publish_order)}

    def chunks_of(self, bundle: Bundle) -> dict[str, bytes]:
        return {
            c.sha256: chunking.chunk_bytes(data, c)
            for data in release_files(bundle).values()
            for c in chunking.split(data)
        }

    # --- changes ---

    def add_bundle(self, bundle: Bundle, *, expires: datetime | None = None) -> PublishSet:
        """Publish a release, or another profile's variant of one (see :func:`placement`);
        adding one already published with identical files changes nothing (the chunks are
        still returned, to re-publish a broker that lost them)."""
        _check_release(bundle)
        files = release_files(bundle)
        split = {name: chunking.split(data) for name, data in files.items()}
        chunks = {
            c.sha256: chunking.chunk_bytes(files[n], c) for n, cs in split.items() for c in cs
        }
        state = self._state()
        current = state.all_targets()
        m = bundle.manifest
        prefix = placement(current, m.name, m.version, m.profile)
        merged = merge_release(
            current, release_targets(bundle, split, prefix), m.name, m.version, prefix
        )
        if merged is None:
            return PublishSet(self.metadata_files(), chunks)
        pruned = self._update(state, targets=merged, expires=expires)
        return PublishSet(self.metadata_files(), chunks, pruned)

    def remove_release(
        self, name: str, version: int, *, expires: datetime | None = None
    ) -> PublishSet:
        state = self._state()
        prefix = release_prefix(name, version)
        current = state.all_targets()
        kept = {p: t for p, t in current.items() if not p.startswith(prefix)}
        if len(kept) == len(current):
            raise InputError(
                f"{name} version {format_version(version)} is not published in {self.directory}; "
                "check the name and version against the repository's releases"
            )
        gone = [t for p, t in current.items() if p.startswith(prefix)]
        unused = sorted(chunk_ids(gone) - chunk_ids(kept.values()))
        pruned = self._update(state, targets=kept, expires=expires)
        return PublishSet(self.metadata_files(), {}, pruned, tuple(unused))

    def set_mirrors(
        self, name: str, version: int, mirrors: list[str], *, expires: datetime | None = None
    ) -> tuple[str, ...] | None:
        """Sign ``mirrors`` (HTTP(S) base URLs, in the order devices try them) into every
        variant's manifest target of ``name`` v``version``: the pruned metadata file names,
        or None when the release already lists exactly these."""
        state = self._state()
        changed = with_mirrors(state.all_targets(), name, version, mirrors)
        if changed is None:
            return None
        return self._update(state, targets=changed, expires=expires)

    def refresh(self, *, expires: datetime | None = None) -> PublishSet:
        """Always a new timestamp; snapshot and targets when stale or signed by keys the root no
        longer trusts; everything after the keyring's root moved on (rotation)."""
        pruned = self._update(self._state(), targets=None, expires=expires)
        return PublishSet(self.metadata_files(), {}, pruned)

    # --- internals ---

    def _state(self) -> _State:
        meta = self.metadata_dir
        timestamp = _load(meta / _TIMESTAMP, Timestamp)
        snapshot = _load(meta / f"{timestamp.signed.snapshot_meta.version}.snapshot.json", Snapshot)
        if _TARGETS_META not in snapshot.signed.meta:
            raise InputError(f"{meta}: the current snapshot lists no targets; restore a backup")
        targets_version = snapshot.signed.meta[_TARGETS_META].version
        targets = _load(meta / f"{targets_version}.targets.json", Targets)
        delegated = {}
        roles = targets.signed.delegations.roles if targets.signed.delegations else None
        for role in roles or ():
            listed = snapshot.signed.meta.get(f"{role}.json")
            if listed is None:
                raise InputError(f"{meta}: the current snapshot lists no {role}; restore a backup")
            delegated[role] = _load(meta / f"{listed.version}.{role}.json", Targets)
        count = sum(1 for p in meta.glob("*.root.json") if _VERSIONED.match(p.name))
        roots = tuple(_read_bytes(meta / f"{n}.root.json", "root") for n in range(1, count + 1))
        return _State(roots, timestamp, snapshot, targets, delegated)

    def _update(
        self,
        state: _State,
        *,
        targets: dict[str, TargetFile] | None,
        expires: datetime | None,
    ) -> tuple[str, ...]:
        """Pick up root rotations, sign what changed or went stale plus a new timestamp,
        write it all, prune; returns the pruned file names."""
        trust, new_roots = _walk_roots(self.keyring, state.roots)
        sign = _signing(trust.root, online_signers(self.keyring, trust.root))
        files = {
            f"{n}.root.json": data for n, data in enumerate(new_roots, start=len(state.roots) + 1)
        }
        files |= _plan(
            state,
            trust.root,
            sign,
            now=datetime.now(UTC),
            expires=_utc(expires) if expires else None,
            targets=targets,
            resign_all=bool(new_roots),
            force_timestamp=True,
        )
        self._write(files)
        return self._prune()

    def _write(self, files: Mapping[str, bytes]) -> None:
        # In the given order, timestamp.json last: it is what makes the rest current.
        for name, data in files.items():
            write_bytes_atomic(self.metadata_dir / name, data)

    def _prune(self) -> tuple[str, ...]:
        """Delete snapshot/targets/release role versions older than the latest KEEP_VERSIONS
        (and any newer orphan an interrupted write left), and every version of a role no
        longer delegated (a removed release); root versions are never deleted."""
        state = self._state()
        current = {
            "snapshot": state.snapshot.signed.version,
            "targets": state.targets.signed.version,
            **{role: md.signed.version for role, md in state.delegated.items()},
        }
        removed = []
        for path in sorted(self.metadata_dir.iterdir()):
            match = _VERSIONED.match(path.name)
            if match and match[2] != "root":
                latest = current.get(match[2], 0)
                if not latest - KEEP_VERSIONS < int(match[1]) <= latest:
                    path.unlink()
                    removed.append(path.name)
        return tuple(removed)
