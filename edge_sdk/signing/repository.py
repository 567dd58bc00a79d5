"""The fleet's TUF repository on the operator's machine: what devices' ngclient refreshes against.

Layout (``REPO/metadata/`` is published file by file as retained MQTT messages)::

    metadata/N.root.json        every root version, copied from the keyring: clients walk them
    metadata/timestamp.json     names the current snapshot: the commit point
    metadata/V.snapshot.json    consistent snapshots (the keyring's root sets consistent_snapshot),
    metadata/V.targets.json     named by version as ngclient requests them; the latest
                                KEEP_VERSIONS of each are kept for clients mid-refresh
    metadata/V.<model>-v<N>.json  one delegated targets role per release (release_roles.py):
                                a device fetches only the one it installs

Devices fetch content-addressed chunks, not files, so the repository stores metadata only and
hands the chunks to the caller in a :class:`PublishSet`. :class:`Repository` is the I/O shell;
the rest lives beside it:

    release_targets.py     a release (each profile's variant) as targets with chunk lists
    release_mirrors.py     the signed list of HTTP(S) stores a release may be fetched from
    metadata_plan.py       the pure core: what a change re-signs, versions, expiries
    repository_layout.py   metadata/ on disk: load the state, publish order, write, prune
    repository_signers.py  the keyring's root history and online signers
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The ignore: python-tuf re-exports these names without __all__, which mypy --strict (no
# implicit re-export) flags; the names and their types still resolve.
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge_sdk.core import chunking
from edge_sdk.core.bundle import MANIFEST, Bundle, format_version
from edge_sdk.core.trust.tuf_checks import utc
from edge_sdk.errors import InputError, OutputError
from edge_sdk.signing.metadata_plan import TIMESTAMP, RepositoryState, genesis, plan, signing
from edge_sdk.signing.release_mirrors import MIRRORS, with_mirrors
from edge_sdk.signing.release_targets import (
    check_release,
    chunk_ids,
    merge_release,
    placement,
    release_files,
    release_prefix,
    release_record,
    release_targets,
    variants,
)
from edge_sdk.signing.repository_layout import (
    KEEP_VERSIONS,
    METADATA_DIR,
    load_state,
    metadata_files,
    prune,
    write_files,
)
from edge_sdk.signing.repository_signers import online_signers, walk_roots

# Names callers import from here, besides the two classes below.
__all__ = [
    "KEEP_VERSIONS",
    "METADATA_DIR",
    "MIRRORS",
    "PublishSet",
    "Repository",
    "online_signers",
    "placement",
    "variants",
]


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
        trust, roots = walk_roots(keyring, ())
        sign = signing(trust.root, online_signers(keyring, trust.root))
        files = {f"{n}.root.json": data for n, data in enumerate(roots, start=1)}
        files |= genesis(sign, datetime.now(UTC), utc(expires) if expires else None)
        repo = cls(directory, keyring)
        try:
            repo.metadata_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {repo.metadata_dir}: {e.strerror}") from e
        write_files(repo.metadata_dir, files)
        return repo

    @classmethod
    def open(cls, directory: Path, keyring: Path) -> Repository:
        repo = cls(directory, keyring)
        if not (repo.metadata_dir / TIMESTAMP).is_file():
            raise InputError(
                f"{directory} is not an edge-sdk repository (no {METADATA_DIR}/{TIMESTAMP}); "
                "pass the directory given to Repository.create"
            )
        walk_roots(keyring, repo._state().roots)  # a wrong keyring fails now, not mid-publish
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
        return release_record(targets.get(f"{release_prefix(name, version)}{MANIFEST}"))

    def release_variants(self, name: str, version: int) -> dict[str, dict[str, Any]]:
        """profile -> signed release record of every variant of ``name`` v``version`` (empty
        when that release is not in the repository)."""
        targets = self._state().all_targets()
        found = {}
        for profile, prefix in variants(targets, name, version).items():
            record = release_record(targets.get(prefix + MANIFEST))
            if record is not None:
                found[profile] = record
        return found

    def metadata_files(self) -> dict[str, bytes]:
        """Every published file under metadata/, in publish order (see PublishSet)."""
        return metadata_files(self.metadata_dir)

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
        check_release(bundle)
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

    def _state(self) -> RepositoryState:
        return load_state(self.metadata_dir)

    def _update(
        self,
        state: RepositoryState,
        *,
        targets: dict[str, TargetFile] | None,
        expires: datetime | None,
    ) -> tuple[str, ...]:
        """Pick up root rotations, sign what changed or went stale plus a new timestamp,
        write it all, prune; returns the pruned file names."""
        trust, new_roots = walk_roots(self.keyring, state.roots)
        sign = signing(trust.root, online_signers(self.keyring, trust.root))
        files = {
            f"{n}.root.json": data for n, data in enumerate(new_roots, start=len(state.roots) + 1)
        }
        files |= plan(
            state,
            trust.root,
            sign,
            now=datetime.now(UTC),
            expires=utc(expires) if expires else None,
            targets=targets,
            resign_all=bool(new_roots),
            force_timestamp=True,
        )
        write_files(self.metadata_dir, files)
        return prune(self.metadata_dir)
