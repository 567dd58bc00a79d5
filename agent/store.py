"""The agent's state directory: verified versions side by side, an atomically switched
``current`` pointer, the journal, and the chunk cache.

    STATE/tuf/                           python-tuf's trusted metadata (ngclient writes it)
    STATE/chunks/<sha256>                chunks of an update in flight, each verified on arrival
    STATE/models/<name>/journal.json     the update record (agent.machine.Journal)
    STATE/models/<name>/current          {"version": N}: what runs; replaced atomically
    STATE/models/<name>/versions/<N>/    an installed, verified version (bundle files unpacked,
                                         plus chunks.json: which chunks make up each file)
    STATE/models/<name>/staging/<N>/     files being assembled; never loaded

Every file that matters is written with ``edge_sdk.atomic`` (temp, fsync, rename, fsync the
directory), and a version directory appears only by ``rename`` of a complete staging
directory, so a power cut leaves either the old or the new state, never half of one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.machine import Journal
from edge_sdk.atomic import fsync_dir, write_bytes_atomic
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
    """One model's directory under the state directory."""

    def __init__(self, state_dir: Path, model: str) -> None:
        self.model = model
        self.root = state_dir / "models" / model
        self.versions = self.root / "versions"
        self.staging = self.root / "staging"
        for directory in (self.root, self.versions, self.staging):
            directory.mkdir(parents=True, exist_ok=True, mode=_PRIVATE_DIR)
        self.journal_path = self.root / "journal.json"
        self.current_path = self.root / "current"

    # journal ------------------------------------------------------------------------------

    def load_journal(self) -> Journal:
        if not self.journal_path.exists():
            return Journal(self.model)
        try:
            return Journal.from_json(json.loads(self.journal_path.read_bytes()))
        except (ValueError, KeyError, TypeError) as e:
            # Atomic writes make this a foreign edit, not a power cut: refuse to guess.
            raise UpdateError(
                f"{self.journal_path} is corrupt ({e}); move it aside to start from `current`"
            ) from e

    def save_journal(self, journal: Journal) -> None:
        data = json.dumps(journal.to_json(), indent=1, sort_keys=True).encode()
        try:
            write_bytes_atomic(self.journal_path, data, 0o640)
        except OSError as e:
            raise UpdateError(f"cannot write {self.journal_path}: {e.strerror}") from e

    # current pointer ----------------------------------------------------------------------

    def current(self) -> int | None:
        if not self.current_path.exists():
            return None
        try:
            version = int(json.loads(self.current_path.read_bytes())["version"])
        except (ValueError, KeyError, TypeError) as e:
            raise UpdateError(f"{self.current_path} is corrupt ({e})") from e
        return version if self.version_dir(version).is_dir() else None

    def set_current(self, version: int) -> None:
        """Switch atomically: a reader sees the old pointer or the new one, nothing between."""
        if not self.version_dir(version).is_dir():
            raise UpdateError(f"version {version} of {self.model} is not installed")
        write_bytes_atomic(self.current_path, json.dumps({"version": version}).encode(), 0o640)

    # versions -----------------------------------------------------------------------------

    def version_dir(self, version: int) -> Path:
        return self.versions / str(version)

    def installed(self) -> list[int]:
        return sorted(int(p.name) for p in self.versions.iterdir() if p.name.isdigit())

    def staging_dir(self, version: int) -> Path:
        return self.staging / str(version)

    def fresh_staging(self, version: int) -> Path:
        directory = self.staging_dir(version)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, mode=_PRIVATE_DIR)
        return directory

    def install(self, version: int, chunk_index: dict[str, Any]) -> Path:
        """Move a complete, verified staging directory into place (one rename)."""
        staged = self.staging_dir(version)
        write_bytes_atomic(staged / CHUNK_INDEX, json.dumps(chunk_index).encode(), 0o640)
        target = self.version_dir(version)
        if target.exists():
            shutil.rmtree(target)  # a left-over from a cut install; `current` never named it
        os.replace(staged, target)
        fsync_dir(self.versions)
        return target

    def remove(self, version: int) -> None:
        shutil.rmtree(self.version_dir(version), ignore_errors=True)

    def prune(self, keep: Iterable[int]) -> list[int]:
        kept = set(keep)
        removed = [v for v in self.installed() if v not in kept]
        for version in removed:
            self.remove(version)
        for leftover in self.staging.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        return removed

    def local_chunks(self) -> Iterator[tuple[str, ChunkRef]]:
        """Every chunk an installed version holds, found through its chunks.json."""
        for version in self.installed():
            directory = self.version_dir(version)
            try:
                index = json.loads((directory / CHUNK_INDEX).read_bytes())
            except (OSError, ValueError):
                continue
            for name, chunks in index.items():
                offset = 0
                for sha, length in chunks:
                    yield sha, ChunkRef(directory / name, offset, int(length))
                    offset += int(length)
