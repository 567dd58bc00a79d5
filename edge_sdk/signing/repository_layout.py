"""The repository's files on disk: what ``REPO/metadata/`` holds, loading the current state from
it, listing its files in publish order, writing a change and pruning old versions.

There is no state file: timestamp.json -> V.snapshot.json -> V.targets.json (and the roles it
delegates to) *is* the state. timestamp.json is written last, so a crash part-way leaves the
previous state in force and the newer files it left behind are simply overwritten by the next
change. The decisions are :mod:`edge_sdk.signing.metadata_plan`'s; this is the I/O around them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

# The ignore: python-tuf re-exports these names without __all__, which mypy --strict (no
# implicit re-export) flags; the names and their types still resolve.
from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError

from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.errors import InputError
from edge_sdk.signing.metadata_plan import TARGETS_META, TIMESTAMP, RepositoryState

METADATA_DIR = "metadata"
KEEP_VERSIONS = 3
# N.root.json, V.snapshot.json, V.targets.json and V.<model>-v<N>.json (a release's role).
_VERSIONED = re.compile(r"^(\d+)\.([A-Za-z0-9][A-Za-z0-9._-]*)\.json\Z")
_T = TypeVar("_T", Timestamp, Snapshot, Targets)


def read_bytes(path: Path, what: str) -> bytes:
    """The bytes of ``path``, one of the ``what`` files (repository, root) an operator restores
    from a backup when it is missing."""
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"{path} is missing; restore the {what} from a backup") from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e


def _load(path: Path, kind: type[_T]) -> Metadata[_T]:
    data = read_bytes(path, "repository")
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except DeserializationError as e:
        raise InputError(f"{path} is not TUF metadata ({e}); restore it from a backup") from e
    if not isinstance(md.signed, kind):
        raise InputError(f"{path} holds {md.signed.type} metadata, not {kind.type}; restore it")
    return md


def load_state(meta: Path) -> RepositoryState:
    """The repository state the metadata directory ``meta`` holds, from timestamp.json down."""
    timestamp = _load(meta / TIMESTAMP, Timestamp)
    snapshot = _load(meta / f"{timestamp.signed.snapshot_meta.version}.snapshot.json", Snapshot)
    if TARGETS_META not in snapshot.signed.meta:
        raise InputError(f"{meta}: the current snapshot lists no targets; restore a backup")
    targets_version = snapshot.signed.meta[TARGETS_META].version
    targets = _load(meta / f"{targets_version}.targets.json", Targets)
    delegated = {}
    roles = targets.signed.delegations.roles if targets.signed.delegations else None
    for role in roles or ():
        listed = snapshot.signed.meta.get(f"{role}.json")
        if listed is None:
            raise InputError(f"{meta}: the current snapshot lists no {role}; restore a backup")
        delegated[role] = _load(meta / f"{listed.version}.{role}.json", Targets)
    count = sum(1 for p in meta.glob("*.root.json") if _VERSIONED.match(p.name))
    roots = tuple(read_bytes(meta / f"{n}.root.json", "root") for n in range(1, count + 1))
    return RepositoryState(roots, timestamp, snapshot, targets, delegated)


def _publish_order(name: str) -> tuple[int, int]:
    # Roots, then the release roles and targets, then the snapshot that lists them; the
    # timestamp last.
    kind_rank = {"root": 0, "snapshot": 2}
    match = _VERSIONED.match(name)
    return (kind_rank.get(match[2], 1), int(match[1])) if match else (3, 0)


def metadata_files(meta: Path) -> dict[str, bytes]:
    """Every published file under metadata/, in publish order (see PublishSet)."""
    names = [
        p.name
        for p in meta.iterdir()
        if p.is_file() and (p.name == TIMESTAMP or _VERSIONED.match(p.name))
    ]
    return {n: (meta / n).read_bytes() for n in sorted(names, key=_publish_order)}


def write_files(meta: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into ``meta`` in the given order, each atomically."""
    # In the given order, timestamp.json last: it is what makes the rest current.
    for name, data in files.items():
        write_bytes_atomic(meta / name, data)


def prune(meta: Path) -> tuple[str, ...]:
    """Delete snapshot/targets/release role versions older than the latest KEEP_VERSIONS
    (and any newer orphan an interrupted write left), and every version of a role no
    longer delegated (a removed release); root versions are never deleted."""
    state = load_state(meta)
    current = {
        "snapshot": state.snapshot.signed.version,
        "targets": state.targets.signed.version,
        **{role: md.signed.version for role, md in state.delegated.items()},
    }
    removed = []
    for path in sorted(meta.iterdir()):
        match = _VERSIONED.match(path.name)
        if match and match[2] != "root":
            latest = current.get(match[2], 0)
            if not latest - KEEP_VERSIONS < int(match[1]) <= latest:
                path.unlink()
                removed.append(path.name)
    return tuple(removed)
