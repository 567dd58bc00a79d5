"""The small files of the agent's state directory, read and written defensively.

The journal, the ``current`` pointer, a version's ``chunks.json`` and its install record are
tiny JSON files this agent wrote, but anyone with access to the device may have edited them:
what reads them here caps their size and parses them strictly, and a problem is an
``UpdateError`` that names the file, never another exception. A failed write is mapped once
(:func:`write_failure`): ENOSPC becomes ``DiskSpaceError``, so the report says to free space.
Directories are removed by renaming them aside first (:func:`delete_tree` finishes the job).
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

from edge_sdk.core.text import error_line
from edge_sdk.errors import DiskSpaceError, OutputError, UpdateError

PRIVATE_DIR = 0o750  # the state directory's folders: the agent's user and group only
SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"0|[1-9][0-9]{0,17}")
MAX_VERSION = 10**18 - 1  # what a version directory's name can spell (_VERSION)
MAX_RECORD_BYTES = 1 << 20  # journal, pointer, chunk index, install record: all tiny
# What parsing a small JSON file of ours that someone else edited can raise.
PARSE_ERRORS = (ValueError, TypeError, RecursionError, OverflowError)


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


def short_error(e: BaseException) -> str:
    return error_line(e, 160)


def version_number(name: str) -> int | None:
    return int(name) if _VERSION.fullmatch(name) else None


def plain_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )


def parse_chunk_index(doc: object) -> dict[str, list[tuple[str, int]]] | None:
    if not isinstance(doc, dict):
        return None
    index: dict[str, list[tuple[str, int]]] = {}
    for name, chunks in doc.items():
        if not plain_name(name) or not isinstance(chunks, list):
            return None
        parsed: list[tuple[str, int]] = []
        for chunk in chunks:
            if not isinstance(chunk, list) or len(chunk) != 2:
                return None
            sha, length = chunk
            if not isinstance(sha, str) or not SHA256.fullmatch(sha):
                return None
            if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                return None
            parsed.append((sha, length))
        index[name] = parsed
    return index


def read_capped(path: Path, cap: int, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(cap + 1)
    except OSError as e:
        raise UpdateError(f"cannot read the {what} {path}: {e.strerror or e}") from e
    if len(data) > cap:
        raise UpdateError(f"{path} is over {cap} bytes: not a {what} this agent wrote")
    return data


def list_entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except OSError:
        return []


def delete_tree(path: Path) -> None:
    """Delete what was renamed aside; a failure only leaves it for the next
    :meth:`agent.update.store.ModelStore.clean`."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
