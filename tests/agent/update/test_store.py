"""The agent's state directory: journal, `current` pointer, installed versions, chunk cache."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent.update.chunk_cache import ChunkCache, ChunkRef
from agent.update.machine import Event, Journal, State
from agent.update.store import CHUNK_INDEX, ModelStore
from edge_sdk.errors import DiskSpaceError, UpdateError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "state", "digits")


def install(store: ModelStore, version: int, files: dict[str, list[bytes]]) -> Path:
    """Stage ``files`` (each given as its chunks) and install them as ``version``."""
    staging = store.fresh_staging(version)
    index: dict[str, Any] = {}
    for name, chunks in files.items():
        (staging / name).write_bytes(b"".join(chunks))
        index[name] = [[sha(c), len(c)] for c in chunks]
    return store.install(version, index)


# -- layout and journal ------------------------------------------------------------------------


def test_the_model_directory_layout(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, "digits")
    assert store.root == tmp_path / "models" / "digits"
    assert store.versions.is_dir() and store.staging.is_dir()
    assert store.journal_path == store.root / "journal.json"
    assert store.version_dir(3) == store.root / "versions" / "3"
    assert store.staging_dir(3) == store.root / "staging" / "3"


def test_missing_journal_is_a_fresh_one(store: ModelStore) -> None:
    assert not store.journal_path.exists()
    assert store.load_journal() == Journal("digits")


def test_journal_save_and_load_round_trip(store: ModelStore) -> None:
    journal = (
        Journal("digits", floor=2)
        .advance(Event.ASSIGNED, now=10.0, version=3, previous=2, serial=5)
        .advance(Event.DOWNLOADED, now=11.0, reason="fetched")
    )
    store.save_journal(journal)
    assert store.journal_path.exists()
    assert store.load_journal() == journal
    # A second save replaces the first.
    failed = journal.advance(Event.ERROR, now=12.0, reason="hash mismatch")
    store.save_journal(failed)
    loaded = store.load_journal()
    assert loaded == failed
    assert loaded.state is State.FAILED
    # Saved through a temp file that does not stay behind.
    assert sorted(p.name for p in store.root.iterdir()) == ["journal.json", "staging", "versions"]


def test_a_journal_survives_a_fresh_store_object(tmp_path: Path) -> None:
    journal = Journal("digits", state=State.PROBATION, version=4, previous=3, restarts=1)
    ModelStore(tmp_path, "digits").save_journal(journal)
    assert ModelStore(tmp_path, "digits").load_journal() == journal
    assert ModelStore(tmp_path, "other").load_journal() == Journal("other")


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'{"state": "idle"}',
        b'{"model": "digits", "state": "exploded"}',
        b'{"model": "digits", "state": "idle", "version": "three"}',
        b'{"model": "digits", "state": "idle", "history": [1]}',
    ],
)
def test_a_corrupt_journal_is_an_update_error(store: ModelStore, content: bytes) -> None:
    store.journal_path.write_bytes(content)
    with pytest.raises(UpdateError) as err:
        store.load_journal()
    message = str(err.value)
    assert "\n" not in message
    assert str(store.journal_path) in message and "corrupt" in message


# -- current pointer ---------------------------------------------------------------------------


def test_no_current_before_anything_is_installed(store: ModelStore) -> None:
    assert store.current() is None


def test_set_current_refuses_a_version_that_is_not_installed(store: ModelStore) -> None:
    install(store, 1, {"model.onnx": [b"one"]})
    with pytest.raises(UpdateError, match="version 2 of digits is not installed"):
        store.set_current(2)
    assert not store.current_path.exists()
    store.fresh_staging(3)  # staged is not installed either
    with pytest.raises(UpdateError):
        store.set_current(3)


def test_set_current_switches_the_pointer(store: ModelStore) -> None:
    install(store, 1, {"model.onnx": [b"one"]})
    install(store, 2, {"model.onnx": [b"two"]})
    store.set_current(1)
    assert store.current() == 1
    store.set_current(2)
    assert store.current() == 2
    assert json.loads(store.current_path.read_bytes()) == {"version": 2}
    assert not [p for p in store.root.iterdir() if p.name.endswith(".tmp")]


def test_current_is_none_when_the_pointer_names_a_missing_version(store: ModelStore) -> None:
    install(store, 1, {"model.onnx": [b"one"]})
    store.set_current(1)
    store.remove(1)
    assert store.current_path.exists()
    assert store.current() is None


@pytest.mark.parametrize("content", [b"garbage", b"{}", b'{"version": "x"}', b"[1]"])
def test_a_corrupt_pointer_is_an_update_error(store: ModelStore, content: bytes) -> None:
    store.current_path.write_bytes(content)
    with pytest.raises(UpdateError, match="corrupt"):
        store.current()


# -- install, prune, local chunks --------------------------------------------------------------


def test_install_moves_the_staging_directory_into_place(store: ModelStore) -> None:
    staging = store.fresh_staging(5)
    (staging / "model.onnx").write_bytes(b"weights")
    inode = staging.stat().st_ino
    index = {"model.onnx": [[sha(b"weights"), 7]]}

    target = store.install(5, index)

    assert target == store.version_dir(5)
    assert not staging.exists()
    assert target.stat().st_ino == inode  # renamed, not copied
    assert (target / "model.onnx").read_bytes() == b"weights"
    assert json.loads((target / CHUNK_INDEX).read_bytes()) == index
    assert store.installed() == [5]


def test_install_replaces_a_leftover_version_directory(store: ModelStore) -> None:
    leftover = store.version_dir(2)
    leftover.mkdir()
    (leftover / "half-written").write_bytes(b"x")
    install(store, 2, {"model.onnx": [b"complete"]})
    assert sorted(p.name for p in leftover.iterdir()) == [CHUNK_INDEX, "model.onnx"]


def test_fresh_staging_starts_empty(store: ModelStore) -> None:
    staging = store.fresh_staging(4)
    (staging / "partial").write_bytes(b"x")
    assert list(store.fresh_staging(4).iterdir()) == []


def test_installed_lists_versions_in_numeric_order(store: ModelStore) -> None:
    for version in (10, 2, 9):
        install(store, version, {"m": [b"x"]})
    (store.versions / "notes").mkdir()
    assert store.installed() == [2, 9, 10]


def test_local_chunks_read_the_right_slices(store: ModelStore) -> None:
    model = [b"0123", b"456789", b"A"]
    labels = [b"cat\ndog\n"]
    install(store, 1, {"model.onnx": model, "labels.txt": labels})
    install(store, 2, {"model.onnx": [b"second"]})

    found = list(store.local_chunks())

    assert len(found) == 5
    for name, ref in found:
        assert isinstance(ref, ChunkRef)
        assert sha(ref.read()) == name
    refs = dict(found)
    first = refs[sha(b"456789")]
    assert (first.path, first.offset, first.length) == (store.version_dir(1) / "model.onnx", 4, 6)
    assert refs[sha(b"A")].offset == 10
    assert refs[sha(b"second")].path == store.version_dir(2) / "model.onnx"


def test_local_chunks_skip_a_version_without_a_readable_index(store: ModelStore) -> None:
    install(store, 1, {"m": [b"kept"]})
    install(store, 2, {"m": [b"lost"]})
    install(store, 3, {"m": [b"bad"]})
    (store.version_dir(2) / CHUNK_INDEX).unlink()
    (store.version_dir(3) / CHUNK_INDEX).write_bytes(b"{broken")
    assert [name for name, _ in store.local_chunks()] == [sha(b"kept")]


def test_prune_keeps_the_given_versions_and_clears_staging(store: ModelStore) -> None:
    for version in (1, 2, 3, 4):
        install(store, version, {"m": [str(version).encode()]})
    store.fresh_staging(5)
    store.fresh_staging(6)

    removed = store.prune([4, 2, 99])

    assert removed == [1, 3]
    assert store.installed() == [2, 4]
    assert store.staging.is_dir()
    assert list(store.staging.iterdir()) == []


def test_prune_keeps_what_current_names(store: ModelStore) -> None:
    install(store, 1, {"m": [b"a"]})
    install(store, 2, {"m": [b"b"]})
    store.set_current(2)
    store.prune([2])
    assert store.current() == 2
    assert store.installed() == [2]


# -- chunk cache -------------------------------------------------------------------------------


def test_chunk_cache_put_has_discard_clear(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "chunks")
    a, b, c = b"alpha", b"beta", b"gamma"
    assert not cache.has(sha(a))
    for data in (a, b, c):
        cache.put(sha(data), data)
    assert all(cache.has(sha(d)) for d in (a, b, c))
    assert cache.path(sha(b)).read_bytes() == b
    assert cache.path(sha(b)) == tmp_path / "chunks" / sha(b)

    cache.discard([sha(a), sha(b"never stored")])
    assert not cache.has(sha(a))
    assert cache.has(sha(b)) and cache.has(sha(c))

    cache.clear()
    assert list(cache.directory.iterdir()) == []
    assert not cache.has(sha(c))


def test_a_chunk_cache_on_an_existing_directory_sees_its_chunks(tmp_path: Path) -> None:
    ChunkCache(tmp_path / "chunks").put(sha(b"x"), b"x")
    assert ChunkCache(tmp_path / "chunks").has(sha(b"x"))


def test_put_past_the_write_limit_is_disk_full_and_leaves_no_file(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "chunks", write_limit=10)
    first, second = b"123456", b"abcdef"
    cache.put(sha(first), first)

    with pytest.raises(DiskSpaceError) as err:
        cache.put(sha(second), second)

    assert "disk full" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, UpdateError)
    assert sorted(p.name for p in cache.directory.iterdir()) == [sha(first)]
    assert not cache.has(sha(second))


def test_the_write_limit_counts_what_was_written(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "chunks", write_limit=10)
    cache.put(sha(b"1234"), b"1234")
    with pytest.raises(DiskSpaceError):
        cache.put(sha(b"7654321"), b"7654321")
    cache.put(sha(b"abcdef"), b"abcdef")  # exactly up to the limit still fits
    with pytest.raises(DiskSpaceError):
        cache.put(sha(b"z"), b"z")
    assert sorted(p.name for p in cache.directory.iterdir()) == sorted(
        [sha(b"1234"), sha(b"abcdef")]
    )


def test_a_write_error_other_than_enospc_is_an_update_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ChunkCache(tmp_path / "chunks")

    def fail(*args: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("agent.update.store.os.replace", fail)
    with pytest.raises(UpdateError) as err:
        cache.put(sha(b"x"), b"x")
    assert not isinstance(err.value, DiskSpaceError)
    assert list(cache.directory.iterdir()) == []


def test_enospc_from_the_file_system_is_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ChunkCache(tmp_path / "chunks")

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("agent.update.store.os.replace", full)
    with pytest.raises(DiskSpaceError):
        cache.put(sha(b"x"), b"x")
    assert list(cache.directory.iterdir()) == []


def test_a_torn_chunk_is_not_trusted_on_resume(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "chunks")
    data = b"chunk bytes" * 100
    cache.put(sha(data), data)
    assert cache.verified(sha(data), len(data))
    cache.path(sha(data)).write_bytes(data[:10])  # what a power cut may leave unflushed
    assert not cache.verified(sha(data), len(data))
    assert not cache.has(sha(data))  # removed, so the chunk is fetched again


def test_stray_temporary_files_are_cleared_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "chunks"
    directory.mkdir()
    (directory / ".abc.tmp").write_bytes(b"half")
    ChunkCache(directory)
    assert list(directory.iterdir()) == []


def test_a_temp_file_that_cannot_be_made_for_lack_of_space_is_disk_full(tmp_path: Path) -> None:
    from agent.update.state_files import write_failure
    from edge_sdk.errors import OutputError

    try:
        raise OutputError("cannot write") from OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OutputError as e:
        assert isinstance(write_failure(e, tmp_path / "f"), DiskSpaceError)
    other = OSError(errno.EIO, os.strerror(errno.EIO))
    failure = write_failure(other, tmp_path / "f")
    assert isinstance(failure, UpdateError) and not isinstance(failure, DiskSpaceError)


# -- complete versions, atomic removal, start-up cleaning (issue 11, class 6) -------------------


def test_a_version_directory_missing_a_listed_file_is_not_installed(store: ModelStore) -> None:
    install(store, 1, {"manifest.json": [b"{}"], "model.onnx": [b"weights", b"more"]})
    install(store, 2, {"manifest.json": [b"{}"], "model.onnx": [b"two"]})
    install(store, 3, {"manifest.json": [b"{}"], "model.onnx": [b"three"]})
    (store.version_dir(1) / "manifest.json").unlink()  # what a cut inside rmtree leaves
    (store.version_dir(2) / "model.onnx").write_bytes(b"tw")  # shorter than listed
    store.current_path.write_bytes(b'{"version": 1}')
    assert store.installed() == [3]
    assert store.current() is None
    with pytest.raises(UpdateError, match="not installed"):
        store.set_current(1)
    assert [sha for sha, _ in store.local_chunks()] == [sha(b"{}"), sha(b"three")]


@pytest.mark.parametrize(
    "index",
    [
        b"",
        b"[]",
        b"{}",
        b'{"../escape": [["' + b"0" * 64 + b'", 1]]}',
        b'{"m": [["short", 1]]}',
        b'{"m": [["' + b"0" * 64 + b'", -1]]}',
        b'{"m": [["' + b"0" * 64 + b'", true]]}',
        b'{"m": [["' + b"0" * 64 + b'", 1e400]]}',
        b'{"m": 5}',
        b"[" * 5000,
    ],
)
def test_a_malformed_chunk_index_makes_a_version_incomplete(
    store: ModelStore, index: bytes
) -> None:
    install(store, 1, {"m": [b"x"]})
    (store.version_dir(1) / CHUNK_INDEX).write_bytes(index)
    assert store.installed() == []
    assert list(store.local_chunks()) == []


@pytest.mark.parametrize("name", ["01", "+1", "1.0", "\u00b2", "\u0663", "9" * 200, "-1"])
def test_only_canonical_version_names_count(store: ModelStore, name: str) -> None:
    install(store, 1, {"m": [b"x"]})
    os.rename(store.version_dir(1), store.versions / name)
    assert store.installed() == []


def test_remove_renames_aside_before_deleting(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(store, 1, {"m": [b"x"]})
    install(store, 2, {"m": [b"y"]})
    monkeypatch.setattr("agent.update.store.delete_tree", lambda path: None)  # killed right there
    store.remove(1)
    assert store.installed() == [2]
    names = sorted(p.name for p in store.versions.iterdir())
    assert names[0].startswith(".removing-1-") and names[1:] == ["2"]
    monkeypatch.undo()
    store.clean()
    assert sorted(p.name for p in store.versions.iterdir()) == ["2"]


def test_a_kill_inside_prune_leaves_only_complete_versions(store: ModelStore) -> None:
    for version in (1, 2, 3):
        install(store, version, {"m": [str(version).encode()]})

    class Killed(Exception):
        pass

    def kill() -> None:
        raise Killed

    with pytest.raises(Killed):
        store.prune([3], between=kill)
    assert store.installed() in ([2, 3], [3])
    store.clean()
    assert store.installed() in ([2, 3], [3])
    assert all(not p.name.startswith(".") for p in store.versions.iterdir())


def test_a_replacing_install_cut_between_its_renames_is_put_back(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(store, 1, {"m": [b"old"]})
    store.set_current(1)
    real = os.replace
    calls: list[Path] = []

    def cut(src: Any, dst: Any) -> None:
        calls.append(Path(dst))
        if len(calls) == 3:  # 1: the chunk index write, 2: old aside, 3: new into place
            raise OSError(errno.EIO, "power cut")
        real(src, dst)

    staging = store.fresh_staging(1)
    (staging / "m").write_bytes(b"new")
    monkeypatch.setattr("agent.update.store.os.replace", cut)
    with pytest.raises(UpdateError):
        store.install(1, {"m": [[sha(b"new"), 3]]})
    monkeypatch.undo()
    assert store.installed() == []  # between the renames: nothing named 1
    store.clean()
    assert store.installed() == [1] and store.current() == 1
    assert (store.version_dir(1) / "m").read_bytes() == b"old"


def test_install_over_the_same_version_replaces_it_whole(store: ModelStore) -> None:
    install(store, 1, {"m": [b"old"], "extra": [b"gone"]})
    install(store, 1, {"m": [b"new"]})
    assert sorted(p.name for p in store.version_dir(1).iterdir()) == [CHUNK_INDEX, "m"]
    assert sorted(p.name for p in store.versions.iterdir()) == ["1"]


def test_temp_files_of_cut_writes_are_cleaned_at_start(store: ModelStore) -> None:
    install(store, 1, {"m": [b"x"]})
    store.set_current(1)
    leftovers = [
        store.root / ".journal.json.k2j3h4.tmp",
        store.root / ".current.abcdef.tmp",
        store.versions / ".1.zzz.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"half")
    keep = store.root / "notes.tmp"
    keep.write_bytes(b"not ours")
    store.clean()
    assert not any(p.exists() for p in leftovers)
    assert keep.exists() and store.current() == 1


def test_the_install_record_proves_the_files_verified(store: ModelStore) -> None:
    files = {"manifest.json": b"{}", "model.onnx": b"weights"}
    staging = store.fresh_staging(1)
    for name, data in files.items():
        (staging / name).write_bytes(data)
    store.install(1, {n: [[sha(d), len(d)]] for n, d in files.items()}, verified=files)
    assert store.verified_record(1) == {n: sha(d) for n, d in files.items()}
    assert store.intact(1, files)
    assert not store.intact(1, {**files, "model.onnx": b"weightz"})
    assert not store.intact(1, {**files, "golden.npz": b""})  # not recorded
    (store.version_dir(1) / "verified.json").write_bytes(b'{"files": {"../x": "00"}}')
    assert store.verified_record(1) is None and not store.intact(1, files)


@pytest.mark.parametrize(
    "content",
    [
        b'{"model": "digits", "state": "probation"}',
        b'{"model": "digits", "state": "idle", "version": -3}',
        b'{"model": "digits", "state": "idle", "since": NaN}',
        b'{"model": "digits", "state": "idle", "version": 1e400}',
        b'{"model": "digits", "state": "idle", "history": "abc"}',
        b'{"model": "digits", "state": []}',
        b"[" * 100_000,
        b" " * (2 << 20),
    ],
)
def test_a_journal_the_machine_cannot_act_on_is_refused(store: ModelStore, content: bytes) -> None:
    store.journal_path.write_bytes(content)
    with pytest.raises(UpdateError) as err:
        store.load_journal()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "content", [b'{"version": 1e400}', b'{"version": 1.5}', b'{"version": true}', b"[" * 100_000]
)
def test_a_hostile_pointer_is_an_update_error(store: ModelStore, content: bytes) -> None:
    store.current_path.write_bytes(content)
    with pytest.raises(UpdateError, match=r"corrupt|over"):
        store.current()


def test_a_directory_where_the_journal_should_be_is_an_update_error(store: ModelStore) -> None:
    store.journal_path.mkdir()
    with pytest.raises(UpdateError, match="cannot read"):
        store.load_journal()
