"""Crash-safe writes: the target is the old file or the whole new one, never a part, and the
leftovers of a write cut short are cleaned by the directory's owner."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge_sdk.core.atomic import atomic_writer, clean_temp_files, write_bytes_atomic
from edge_sdk.errors import OutputError


def test_a_write_replaces_the_file_whole_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    write_bytes_atomic(target, b"new contents", mode=0o600)
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk went away"), atomic_writer(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk went away")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_an_interrupt_midway_leaves_the_old_file_too(tmp_path: Path) -> None:
    # Ctrl-C is a BaseException: the cleanup must not depend on catching Exception.
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_writer(target) as handle:
        handle.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_a_directory_that_cannot_take_the_file_is_one_output_error_line(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write to .*absent: .*; choose a writable --out"):
        write_bytes_atomic(tmp_path / "absent" / "f", b"x")


def test_clean_removes_only_the_leftovers_of_cut_writes(tmp_path: Path) -> None:
    leftover = tmp_path / ".state.json.k2j3h4g5.tmp"  # what atomic_writer's mkstemp names
    leftover.write_bytes(b"half")
    kept = [
        tmp_path / "state.json",
        tmp_path / ".tmp",
        tmp_path / "notes.tmp",
        tmp_path / ".hidden",
    ]
    for path in kept:
        path.write_bytes(b"mine")
    (tmp_path / "sub").mkdir()
    below = tmp_path / "sub" / ".x.abc.tmp"  # not below the directory
    below.write_bytes(b"half")
    assert clean_temp_files(tmp_path) == [leftover]
    assert not leftover.exists() and all(p.exists() for p in [*kept, below])


def test_clean_of_a_missing_directory_removes_nothing(tmp_path: Path) -> None:
    assert clean_temp_files(tmp_path / "absent") == []
