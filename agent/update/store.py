"""The agent's state directory: verified versions side by side, an atomically switched
``current`` pointer and the journal (the chunk cache is ``agent.update.chunk_cache``; the
small files are read and written through ``agent.update.state_files``).

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
import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from agent.update.chunk_cache import ChunkRef
from agent.update.machine import RESTING, Journal
from agent.update.state_files import (
    MAX_RECORD_BYTES,
    MAX_VERSION,
    PARSE_ERRORS,
    PRIVATE_DIR,
    SHA256,
    delete_tree,
    list_entries,
    parse_chunk_index,
    plain_name,
    read_capped,
    short_error,
    version_number,
    write_failure,
)
from edge_sdk.core.atomic import (
    TEMP_PREFIX,
    clean_temp_files,
    fsync_dir,
    write_bytes_atomic,
)
from edge_sdk.errors import OutputError, UpdateError

CHUNK_INDEX = "chunks.json"
VERIFIED_RECORD = "verified.json"
_REMOVING = ".removing-"
_REPLACING = ".replacing-"


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
            directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        self.journal_path = self.root / "journal.json"
        self.current_path = self.root / "current"

    def clean(self) -> None:
        """What a cut left behind, undone once at the agent's start (never while another
        process may be writing here): temp files of atomic writes, directories renamed aside
        for removal, and a version renamed aside by a replacing install that was cut before the
        new one took its place (put back)."""
        clean_temp_files(self.root)
        for entry in list_entries(self.versions):
            name = entry.name
            if name.startswith(_REPLACING):
                version = version_number(name[len(_REPLACING) :].split("-")[0])
                if version is not None and not self.version_dir(version).exists():
                    with contextlib.suppress(OSError):
                        os.replace(entry, self.version_dir(version))
                        continue
                delete_tree(entry)
            elif name.startswith((_REMOVING, TEMP_PREFIX)):
                delete_tree(entry)  # renamed aside, or a temp (see edge_sdk.core.atomic)
        with contextlib.suppress(OSError):
            fsync_dir(self.versions)

    # journal ------------------------------------------------------------------------------

    def load_journal(self) -> Journal:
        if not self.journal_path.exists() and not self.journal_path.is_symlink():
            return Journal(self.model)
        data = read_capped(self.journal_path, MAX_RECORD_BYTES, "journal")
        try:
            journal = Journal.from_json(json.loads(data))
        except (*PARSE_ERRORS, KeyError, AttributeError) as e:
            # Atomic writes make this a foreign edit, not a power cut: refuse to guess.
            raise UpdateError(
                f"{self.journal_path} is corrupt ({short_error(e)}); move it aside to start from "
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
        data = read_capped(self.current_path, MAX_RECORD_BYTES, "current pointer")
        try:
            doc = json.loads(data)
            value = doc["version"]
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"version is {type(value).__name__}, not an integer")
        except (*PARSE_ERRORS, KeyError) as e:
            raise UpdateError(
                f"{self.current_path} is corrupt ({short_error(e)}); remove it to serve nothing "
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
        found = (version_number(p.name) for p in list_entries(self.versions))
        return sorted(v for v in found if v is not None and self.complete(v))

    def chunk_index(self, version: int) -> dict[str, list[tuple[str, int]]] | None:
        """The version's ``chunks.json``, checked: plain file names, each a list of
        (sha256, length); ``None`` when it is missing or malformed."""
        directory = self.version_dir(version)
        try:
            data = read_capped(directory / CHUNK_INDEX, MAX_RECORD_BYTES, "chunk index")
            return parse_chunk_index(json.loads(data))
        except (*PARSE_ERRORS, UpdateError):
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
            doc = json.loads(read_capped(path, MAX_RECORD_BYTES, "install record"))
            files = doc["files"]
            if not isinstance(files, dict) or not files:
                return None
            if not all(
                plain_name(k) and isinstance(v, str) and SHA256.fullmatch(v)
                for k, v in files.items()
            ):
                return None
            return dict(files)
        except (*PARSE_ERRORS, KeyError, UpdateError):
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
        directory.mkdir(parents=True, mode=PRIVATE_DIR)
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
            delete_tree(aside)
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
        delete_tree(aside)

    def prune(self, keep: Iterable[int], between: Callable[[], None] = lambda: None) -> list[int]:
        """Remove every version directory not in ``keep`` (complete or not) and the staging
        area. ``between`` runs after each version is renamed aside, before
        its files are deleted (the power-cut tests kill the agent there)."""
        kept = set(keep)
        removed: list[int] = []
        for entry in list_entries(self.versions):
            version = version_number(entry.name)
            if version is None or version in kept:
                continue
            aside = self.versions / f"{_REMOVING}{version}-{secrets.token_hex(4)}"
            try:
                os.replace(entry, aside)
                fsync_dir(self.versions)
            except OSError as e:
                raise write_failure(e, entry) from e
            between()
            delete_tree(aside)
            removed.append(version)
        for leftover in list_entries(self.staging):
            delete_tree(leftover)
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
