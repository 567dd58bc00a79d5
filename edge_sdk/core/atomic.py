"""Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.

A write cut by a power loss or SIGKILL leaves its temp file (``.NAME.XXXXXXXX.tmp``) beside
the target and never touches the target; :func:`clean_temp_files` removes such leftovers when
the owner of the directory starts again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from edge_sdk.errors import OutputError

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` only if the block finishes without error.

    On any exception the temporary file is removed, so ``path`` is either the old file or the
    complete new one, never a partial one.
    """
    directory = path.parent
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=directory
        )
    except OSError as e:
        raise OutputError(
            f"cannot write to {directory}: {e.strerror}; choose a writable --out"
        ) from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_writer(path, mode) as handle:
        handle.write(data)


def clean_temp_files(directory: Path) -> list[Path]:
    """Remove the temp files writes cut short left in ``directory`` (not below it); returns
    them. Only for the single owner of ``directory`` at its start: a temp file of a write in
    progress looks the same. A missing or unreadable directory has nothing to clean."""
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        ours = name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)
        if not ours or len(name) <= len(TEMP_PREFIX + TEMP_SUFFIX):
            continue
        try:
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue  # not ours to force; it only wastes space
    return removed
