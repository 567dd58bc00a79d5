"""The assignment serial floor on its own: the pure decision, and the file it lives in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.update.serials import FILE, SerialFloors, Verdict, judge
from edge_sdk.errors import OutputError


@given(serial=st.integers(1, 2**63), floor=st.integers(0, 2**63))
def test_judge_orders_by_serial(serial: int, floor: int) -> None:
    expected = (
        Verdict.NEW if serial > floor else Verdict.SEEN if serial == floor else Verdict.REPLAY
    )
    assert judge(serial, floor) is expected


def test_a_recorded_floor_survives_a_new_instance(tmp_path: Path) -> None:
    floors = SerialFloors(tmp_path, {})
    floors.record("devices/dev-1", "digits", 7)
    floors.record("groups/canary", "digits", 3)
    again = SerialFloors(tmp_path, {})
    assert again.floor("devices/dev-1", "digits") == 7
    assert again.floor("groups/canary", "digits") == 3
    assert again.floor("devices/dev-1", "other") == 0
    assert again.problem == ""


def test_a_failed_write_changes_neither_file_nor_memory(tmp_path: Path) -> None:
    floors = SerialFloors(tmp_path, {})
    floors.record("devices/dev-1", "digits", 7)
    floors.path = tmp_path / "missing-dir" / FILE  # the write cannot even start
    with pytest.raises((OSError, OutputError)):
        floors.record("devices/dev-1", "digits", 9)
    assert floors.floor("devices/dev-1", "digits") == 7
    assert SerialFloors(tmp_path, {}).floor("devices/dev-1", "digits") == 7


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage",
        b"[]",
        b'{"floors": []}',
        b'{"floors": {"devices/d": {"m": 1.5}}}',
        b"[" * 9000,
    ],
)
def test_an_unreadable_file_falls_back_to_the_journal_serials(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / FILE).write_bytes(content)
    floors = SerialFloors(tmp_path, {"digits": 12})
    assert FILE in floors.problem
    assert floors.floor("devices/dev-1", "digits") == 12
    assert floors.floor("groups/any", "digits") == 12
    floors.record("devices/dev-1", "digits", 13)  # and the next accepted one rewrites it
    assert json.loads((tmp_path / FILE).read_bytes())["floors"] == {"devices/dev-1": {"digits": 13}}
