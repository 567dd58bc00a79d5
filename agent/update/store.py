"""The agent's state directory: verified versions side by side, an atomically switched
``current`` pointer, the journal, and the chunk cache.

    STATE/tuf/                           python-tuf's trusted metadata (ngclient writes it)
    STATE/chunks/<sha256>                chunks of an update in flight, each verified on arrival
    STATE/models/<name>/journal.json     the update record (agent.update.machine.Journal)
    STATE/models/<name>/current          {"version": N}: what runs; replaced atomically
    STATE/models/<name>/versions/<N>/    an installed, verified version (bundle files unpacked,
                                         plus chunks.json: which chunks make up each file)
    STATE/models/<name>/staging/<N>/     files being assembled; never loaded

Every file that matters is written with ``edge_sdk.core.atomic`` (temp, fsync, rename, fsync the
directory), and a version directory appears only by ``rename`` of a complete staging
directory, so a power cut leaves either the old or the new state, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.update.machine import RESTING, Journal
from edge_sdk.core.atomic import (
    TEMP_PREFIX,
    clean_temp_files,
    fsync_dir,
    write_bytes_atomic,
)
from edge_sdk.errors import DiskSpaceError, OutputError, UpdateError

CHUNK_INDEX = "chunks.json"
_PRIVATE_DIR = 0o750


def disk_full(e: OSError, where: Path) -> DiskSpaceError:
    return DiskSpaceError(f"disk full while writing {where}: {e.strerror}; free space and retry")


def write_failure(e: OSError | OutputError, where: Path) -> UpdateError:
    """The update error for a failed write: ``DiskSpaceError`` for ENOSPC, whether it came as
    an OSError or as the OutputError ``atomic_writer`` raises when it cannot make its temp
    file (with the OSError as its cause)."""
    cause = e if isinstance(e, OSError) else e.__cause__
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
        return disk_full(cause, where)
    return UpdateError(f"cannot write {where}: {e}")


@dataclass(frozen=True)
class ChunkRef:
    """Where a chunk can be read locally: a file, an offset and a length."""

    path: Path
    offset: int
    length: int

    def read(self) -> bytes:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read(self.length)


class ChunkCache:
    """Verified chunks of the update in flight, named by their sha256, one file each: a
    download cut anywhere resumes without fetching any of them again.

    Chunks are renamed into place but not fsynced (a flush per 64 KiB would dominate a
    download): after a power cut a chunk may be empty or torn, so a resumed download checks
    each cached chunk again (:meth:`verified`) and fetches the ones that fail.
    """

    def __init__(self, directory: Path, write_limit: int | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=_PRIVATE_DIR)
        for stray in directory.glob(".*.tmp"):  # a write cut before its rename
            stray.unlink(missing_ok=True)
        # Test hook: pretend the disk fills up after this many bytes (None: never).
        self._write_limit = write_limit
        self._written = 0

    def path(self, sha256: str) -> Path:
        return self.directory / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def verified(self, sha256: str, length: int) -> bool:
        """Whether the cached chunk is whole; a torn one is removed so it is fetched again."""
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except OSError:
            return False
        if len(data) == length and hashlib.sha256(data).hexdigest() == sha256:
            return True
        path.unlink(missing_ok=True)
        return False

    def put(self, sha256: str, data: bytes) -> None:
        """Store a chunk the caller has verified; ENOSPC becomes ``DiskSpaceError`` and leaves
        no partial file behind."""
        target = self.path(sha256)
        temporary = self.directory / f".{sha256}.tmp"
        try:
            if self._write_limit is not None and self._written + len(data) > self._write_limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            with temporary.open("wb") as handle:
                handle.write(data)
            os.replace(temporary, target)
        except OSError as e:
            temporary.unlink(missing_ok=True)
            raise write_failure(e, target) from e
        self._written += len(data)

    def discard(self, names: Iterable[str]) -> None:
        for name in names:
            self.path(name).unlink(missing_ok=True)

    def clear(self) -> None:
        for entry in self.directory.iterdir():
            entry.unlink(missing_ok=True)


class ModelStore:
    """One model's directory under the state directory.

    A version directory counts as installed only when it is *complete*: its ``chunks.json``
    reads and every file it lists is there at its full length (:meth:`complete`). Removal is
    atomic too: the directory is first renamed aside (``versions/.removing-N-*``), then
    deleted, so a cut inside the deletion leaves nothing that looks like a version;
    :meth:`clean` removes such leftovers (and temp files of cut writes) at start.
    """

    def __init__(self, state_dir: Path, model: str) -> None:
        self.model = model
        self.root = state_dir / "models" / model
        self.versions = self.root / "versions"
        self.staging = self.root / "staging"
        for directory in (self.root, self.versions, self.staging):
            directory.mkdir(parents=True, exist_ok=True, mode=_PRIVATE_DIR)
        self.journal_path = self.root / "journal.json"
        self.current_path = self.root / "current"

    def clean(self) -> None:
        """What a cut left behind, undone once at the agent's start (never while another
        process may be writing here): temp files of atomic writes, directories renamed aside
        for removal, and a version renamed aside by a replacing install that was cut before the
        new one took its place (put back)."""
        clean_temp_files(self.root)
        for entry in _entries(self.versions):
            name = entry.name
            if name.startswith(_REPLACING):
                version = _version_number(name[len(_REPLACING) :].split("-")[0])
                if version is not None and not self.version_dir(version).exists():
                    with contextlib.suppress(OSError):
                        os.replace(entry, self.version_dir(version))
                        continue
                _delete_tree(entry)
            elif name.startswith((_REMOVING, TEMP_PREFIX)):
                _delete_tree(entry)  # renamed aside, or a temp (see edge_sdk.core.atomic)
        with contextlib.suppress(OSError):
            fsync_dir(self.versions)

    # journal ------------------------------------------------------------------------------

    def load_journal(self) -> Journal:
        if not self.journal_path.exists() and not self.journal_path.is_symlink():
            return Journal(self.model)
        data = _read_capped(self.journal_path, MAX_RECORD_BYTES, "journal")
        try:
            journal = Journal.from_json(json.loads(data))
        except (*_PARSE_ERRORS, KeyError, AttributeError) as e:
            # Atomic writes make this a foreign edit, not a power cut: refuse to guess.
            raise UpdateError(
                f"{self.journal_path} is corrupt ({_short(e)}); move it aside to start from "
                "`current`"
            ) from e
        problem = journal_problem(journal)
        if problem:
            raise UpdateError(
                f"{self.journal_path} is corrupt ({problem}); move it aside to start from `current`"
            )
        return journal

    def save_journal(self, journal: Journal) -> None:
        data = json.dumps(journal.to_json(), indent=1, sort_keys=True).encode()
        try:
            write_bytes_atomic(self.journal_path, data, 0o640)
        except (OSError, OutputError) as e:
            raise write_failure(e, self.journal_path) from e

    # current pointer ----------------------------------------------------------------------

    def current(self) -> int | None:
        """The version ``current`` names, or ``None`` when it names nothing complete."""
        if not self.current_path.exists() and not self.current_path.is_symlink():
            return None
        data = _read_capped(self.current_path, MAX_RECORD_BYTES, "current pointer")
        try:
            doc = json.loads(data)
            value = doc["version"]
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"version is {type(value).__name__}, not an integer")
        except (*_PARSE_ERRORS, KeyError) as e:
            raise UpdateError(
                f"{self.current_path} is corrupt ({_short(e)}); remove it to serve nothing "
                "until the next update"
            ) from e
        return value if self.complete(value) else None

    def set_current(self, version: int) -> None:
        """Switch atomically: a reader sees the old pointer or the new one, nothing between."""
        if not self.complete(version):
            raise UpdateError(f"version {version} of {self.model} is not installed")
        data = json.dumps({"version": version}).encode()
        try:
            write_bytes_atomic(self.current_path, data, 0o640)
        except (OSError, OutputError) as e:
            raise write_failure(e, self.current_path) from e

    # versions -----------------------------------------------------------------------------

    def version_dir(self, version: int) -> Path:
        return self.versions / str(version)

    def installed(self) -> list[int]:
        """Complete versions only, in numeric order."""
        found = (_version_number(p.name) for p in _entries(self.versions))
        return sorted(v for v in found if v is not None and self.complete(v))

    def chunk_index(self, version: int) -> dict[str, list[tuple[str, int]]] | None:
        """The version's ``chunks.json``, checked: plain file names, each a list of
        (sha256, length); ``None`` when it is missing or malformed."""
        directory = self.version_dir(version)
        try:
            data = _read_capped(directory / CHUNK_INDEX, MAX_RECORD_BYTES, "chunk index")
            return _parse_index(json.loads(data))
        except (*_PARSE_ERRORS, UpdateError):
            return None

    def complete(self, version: int) -> bool:
        """Whether ``versions/<version>`` holds every file its chunk index lists, each at its
        full length: never true of a half-deleted or half-written directory."""
        if isinstance(version, bool) or not isinstance(version, int):
            return False
        if not 0 <= version <= MAX_VERSION:
            return False
        directory = self.version_dir(version)
        try:
            if directory.is_symlink() or not directory.is_dir():
                return False
        except OSError:
            return False
        index = self.chunk_index(version)
        if not index:
            return False
        for name, chunks in index.items():
            path = directory / name
            try:
                if path.is_symlink() or not path.is_file():
                    return False
                if path.stat().st_size != sum(n for _, n in chunks):
                    return False
            except OSError:
                return False
        return True

    def verified_record(self, version: int) -> dict[str, str] | None:
        """What this device recorded when it verified ``version`` at install: each file's
        sha256 (``None`` if there is no readable record, e.g. installed by an older agent)."""
        path = self.version_dir(version) / VERIFIED_RECORD
        try:
            doc = json.loads(_read_capped(path, MAX_RECORD_BYTES, "install record"))
            files = doc["files"]
            if not isinstance(files, dict) or not files:
                return None
            if not all(
                _plain_name(k) and isinstance(v, str) and _SHA256.fullmatch(v)
                for k, v in files.items()
            ):
                return None
            return dict(files)
        except (*_PARSE_ERRORS, KeyError, UpdateError):
            return None

    def intact(self, version: int, files: dict[str, bytes]) -> bool:
        """Whether ``files`` (the version's bundle files as just read) are exactly the bytes
        recorded as verified at install, every one of them."""
        record = self.verified_record(version)
        if record is None or set(files) - set(record):
            return False
        return all(hashlib.sha256(data).hexdigest() == record[n] for n, data in files.items())

    def staging_dir(self, version: int) -> Path:
        return self.staging / str(version)

    def fresh_staging(self, version: int) -> Path:
        directory = self.staging_dir(version)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, mode=_PRIVATE_DIR)
        return directory

    def install(
        self,
        version: int,
        chunk_index: dict[str, Any],
        verified: dict[str, bytes] | None = None,
    ) -> Path:
        """Move a complete, verified staging directory into place (one rename). ``verified``
        (the bundle files that passed verification) is recorded by their sha256: the
        version's proof, after a key rotation, that it was verified when installed.

        A version directory already there (a left-over, or the same version re-signed) is
        renamed aside first and put back by :meth:`clean` if the cut falls between the two
        renames, so ``versions/<N>`` is always the old complete version or the new one."""
        staged = self.staging_dir(version)
        try:
            write_bytes_atomic(staged / CHUNK_INDEX, json.dumps(chunk_index).encode(), 0o640)
            if verified is not None:
                record = {"files": {n: hashlib.sha256(d).hexdigest() for n, d in verified.items()}}
                write_bytes_atomic(staged / VERIFIED_RECORD, json.dumps(record).encode(), 0o640)
            target = self.version_dir(version)
            aside: Path | None = None
            if target.exists() or target.is_symlink():
                aside = self.versions / f"{_REPLACING}{version}-{secrets.token_hex(4)}"
                os.replace(target, aside)
            os.replace(staged, target)
            fsync_dir(self.versions)
        except (OSError, OutputError) as e:
            raise write_failure(e, self.version_dir(version)) from e
        if aside is not None:
            _delete_tree(aside)
        return target

    def remove(self, version: int) -> None:
        """Rename the version aside (one atomic step: from here on it is not installed), then
        delete it."""
        directory = self.version_dir(version)
        if not directory.exists() and not directory.is_symlink():
            return
        aside = self.versions / f"{_REMOVING}{version}-{secrets.token_hex(4)}"
        try:
            os.replace(directory, aside)
            fsync_dir(self.versions)
        except OSError as e:
            raise write_failure(e, directory) from e
        _delete_tree(aside)

    def prune(self, keep: Iterable[int], between: Callable[[], None] = lambda: None) -> list[int]:
        """Remove every version directory not in ``keep`` (complete or not) and the staging
        area. ``between`` runs after each version is renamed aside, before
        its files are deleted (the power-cut tests kill the agent there)."""
        kept = set(keep)
        removed: list[int] = []
        for entry in _entries(self.versions):
            version = _version_number(entry.name)
            if version is None or version in kept:
                continue
            aside = self.versions / f"{_REMOVING}{version}-{secrets.token_hex(4)}"
            try:
                os.replace(entry, aside)
                fsync_dir(self.versions)
            except OSError as e:
                raise write_failure(e, entry) from e
            between()
            _delete_tree(aside)
            removed.append(version)
        for leftover in _entries(self.staging):
            _delete_tree(leftover)
        return sorted(removed)

    def local_chunks(self) -> Iterator[tuple[str, ChunkRef]]:
        """Every chunk an installed version holds, found through its chunks.json."""
        for version in self.installed():
            directory = self.version_dir(version)
            for name, chunks in (self.chunk_index(version) or {}).items():
                offset = 0
                for sha, length in chunks:
                    yield sha, ChunkRef(directory / name, offset, length)
                    offset += length


def journal_problem(journal: Journal) -> str:
    """Why a journal that parsed cannot be acted on ("" if it can): the state machine relies
    on these, and a journal edited by hand may break them."""
    in_flight = journal.state not in RESTING
    if in_flight and journal.version is None:
        return f"state {journal.state} names no version"
    for name in ("version", "previous", "rollback_to"):
        value = getattr(journal, name)
        if value is not None and value < 0:
            return f"{name} is negative"
    if journal.serial < 0 or journal.floor < 0 or journal.restarts < 0:
        return "a counter is negative"
    if not math.isfinite(journal.since):
        return "since is not a finite time"
    return ""


_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"0|[1-9][0-9]{0,17}")
MAX_VERSION = 10**18 - 1  # what a version directory's name can spell (_VERSION)
_REMOVING = ".removing-"
_REPLACING = ".replacing-"
VERIFIED_RECORD = "verified.json"
MAX_RECORD_BYTES = 1 << 20  # journal, pointer, chunk index, install record: all tiny
# What parsing a small JSON file of ours that someone else edited can raise.
_PARSE_ERRORS = (ValueError, TypeError, RecursionError, OverflowError)


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]


def _version_number(name: str) -> int | None:
    return int(name) if _VERSION.fullmatch(name) else None


def _plain_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )


def _parse_index(doc: object) -> dict[str, list[tuple[str, int]]] | None:
    if not isinstance(doc, dict):
        return None
    index: dict[str, list[tuple[str, int]]] = {}
    for name, chunks in doc.items():
        if not _plain_name(name) or not isinstance(chunks, list):
            return None
        parsed: list[tuple[str, int]] = []
        for chunk in chunks:
            if not isinstance(chunk, list) or len(chunk) != 2:
                return None
            sha, length = chunk
            if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
                return None
            if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                return None
            parsed.append((sha, length))
        index[name] = parsed
    return index


def _read_capped(path: Path, cap: int, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(cap + 1)
    except OSError as e:
        raise UpdateError(f"cannot read the {what} {path}: {e.strerror or e}") from e
    if len(data) > cap:
        raise UpdateError(f"{path} is over {cap} bytes: not a {what} this agent wrote")
    return data


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except OSError:
        return []


def _delete_tree(path: Path) -> None:
    """Delete what was renamed aside; a failure only leaves it for the next :meth:`clean`."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
