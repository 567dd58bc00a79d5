"""The chunk cache of the update in flight, and where a chunk can be read locally.

    STATE/chunks/<sha256>                a chunk of an update in flight, verified on arrival

A download cut anywhere resumes from what the cache holds; chunks an installed version
already holds are read from its files (:class:`ChunkRef`) and never fetched.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.update.state_files import PRIVATE_DIR, write_failure


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
        directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
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
