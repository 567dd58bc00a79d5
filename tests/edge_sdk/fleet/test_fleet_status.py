"""``edge_sdk.fleet.status``: rows, filters, summary and JSON from parsed device views, with no
broker and a fixed clock."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from edge_sdk.errors import InputError
from edge_sdk.fleet import status as fs
from edge_sdk.fleet.inventory import DeviceView, Figures, ModelView, parse_status

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def model(name: str = "digits", version: int | None = 2, state: str = "committed") -> ModelView:
    return ModelView(
        name,
        version,
        state,
        target_version=version,
        serial=7,
        reason="self-test failed" if state == "failed" else "",
        last_result=state if state in ("committed", "failed") else "",
        last_result_version=version,
        inference=Figures(count=100, errors=2, error_rate=0.02, p50_ms=0.2, p95_ms=0.4),
    )


def device(
    name: str, *models: ModelView, online: bool | None = True, group: str = "lobby"
) -> DeviceView:
    return DeviceView(
        name,
        online=online,
        group=group,
        profile="x86-64",
        at="2026-01-01T11:59:48Z",
        models={m.name: m for m in models},
    )


FLEET = {
    "cam-1": device("cam-1", model(), model("faces", 1)),
    "cam-2": device("cam-2", model(version=1, state="failed"), online=False),
    "cam-3": device("cam-3", group="dock"),
    "bad-1": parse_status("bad-1", b"not json"),
}


def entries() -> list[fs.Entry]:
    return fs.merge(FLEET, {"new-1": fs.Enrolled("new-1", "dock", "jetson-orin")})


def names(rows: list[fs.Row]) -> list[tuple[str, str | None]]:
    return [(r.entry.view.device, r.model.name if r.model else None) for r in rows]


def test_one_row_per_device_and_model_sorted() -> None:
    assert names(fs.select(entries(), fs.Filters())) == [
        ("bad-1", None),
        ("cam-1", "digits"),
        ("cam-1", "faces"),
        ("cam-2", "digits"),
        ("cam-3", None),
        ("new-1", None),
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (fs.Filters(group="dock"), [("cam-3", None), ("new-1", None)]),
        (fs.Filters(model="faces"), [("cam-1", "faces")]),
        (fs.Filters(state="failed"), [("cam-2", "digits")]),
        (fs.Filters(device="cam-1", model="digits"), [("cam-1", "digits")]),
        (fs.Filters(online=True), [("cam-1", "digits"), ("cam-1", "faces"), ("cam-3", None)]),
        # Not known to be online: offline, no presence yet (bad-1), never seen (new-1).
        (fs.Filters(online=False), [("bad-1", None), ("cam-2", "digits"), ("new-1", None)]),
    ],
)
def test_filters(filters: fs.Filters, expected: list[tuple[str, str | None]]) -> None:
    assert names(fs.select(entries(), filters)) == expected


@pytest.mark.parametrize(
    ("filters", "phrase"),
    [
        (fs.Filters(state="broken"), "--state 'broken' is not one of"),
        (fs.Filters(device="cam/1"), "--device"),
        (fs.Filters(group="a+b"), "--group"),
        (fs.Filters(model="#"), "model name"),
    ],
)
def test_bad_filters_are_input_errors(filters: fs.Filters, phrase: str) -> None:
    with pytest.raises(InputError, match=phrase):
        filters.check()


def test_enrolled_devices_fill_in_and_never_seen(tmp_path: Path) -> None:
    records = tmp_path / "devices"
    records.mkdir()
    (records / "new-1.json").write_text(
        json.dumps({"device": "new-1", "fleet": "default", "group": "dock"})
    )
    (records / "cam-3.json").write_text(json.dumps({"group": "x", "profile": "rpi5"}))
    (records / "garbled.json").write_text("{")
    (records / "not an id.json").write_text("{}")
    (records / "elsewhere.json").write_text(json.dumps({"fleet": "other", "group": "g"}))
    enrolled = fs.load_enrolled(tmp_path, "default")
    assert set(enrolled) == {"new-1", "cam-3", "garbled"}
    merged = {e.view.device: e for e in fs.merge(FLEET, enrolled)}
    assert not merged["new-1"].seen and merged["new-1"].view.group == "dock"
    assert fs.presence(merged["new-1"]) == "never seen"
    # The device's own report wins; the record only fills in what it did not report.
    assert merged["cam-3"].view.group == "dock" and merged["cam-3"].view.profile == "x86-64"
    assert merged["garbled"].view.group == ""
    assert fs.load_enrolled(tmp_path / "missing", "default") == {}


def test_age() -> None:
    assert fs.age("2026-01-01T11:59:48Z", NOW) == "12s ago"
    assert fs.age("2026-01-01T11:55:00Z", NOW) == "5m ago"
    assert fs.age("2025-12-30T12:00:00Z", NOW) == "2d ago"
    assert fs.age("2026-01-01T12:00:30Z", NOW) == "0s ago"  # device clock ahead
    assert fs.age("", NOW) == "-"
    assert fs.age("yesterday", NOW) == "-"


def test_summary_counts_devices_states_and_versions() -> None:
    summary = fs.summarize(fs.select(entries(), fs.Filters()))
    assert summary == {
        "devices": 5,
        "online": 2,
        "offline": 1,
        "unknown": 1,
        "never_seen": 1,
        "problems": 1,
        "by_state": {"committed": 2, "failed": 1},
        "by_version": {"digits": {"1": 1, "2": 1}, "faces": {"1": 1}},
    }
    line = fs.summary_line(summary)
    assert line.startswith("5 devices: 2 online, 1 offline, 1 presence unknown, 1 never seen")
    assert "digits v1 x1, v2 x1" in line and "1 failed" in line


def test_json_lists_devices_with_their_selected_models() -> None:
    doc = json.loads(json.dumps(fs.to_json(fs.select(entries(), fs.Filters(device="cam-2")))))
    (cam,) = doc["devices"]
    assert cam["online"] is False and cam["last_seen"] == "2026-01-01T11:59:48Z"
    digits = cam["models"]["digits"]
    assert digits["state"] == "failed" and digits["reason"] == "self-test failed"
    assert digits["last_result"] == {"result": "failed", "version": 1, "reason": ""}
    assert digits["inference"] == {
        "count": 100,
        "errors": 2,
        "error_rate": 0.02,
        "p50_ms": 0.2,
        "p95_ms": 0.4,
    }
    assert doc["summary"]["devices"] == 1
    bad = fs.to_json(fs.select(entries(), fs.Filters(device="bad-1")))["devices"][0]
    assert bad["problem"].startswith("status is not JSON") and bad["models"] == {}


def test_table_shows_health_presence_age_and_problems() -> None:
    console = Console(width=200, record=True)
    console.print(fs.table(fs.select(entries(), fs.Filters()), NOW))
    text = console.export_text()
    cam1 = next(line for line in text.splitlines() if "cam-1" in line and "digits" in line)
    for cell in ("lobby", "x86-64", "committed", "100", "2.0%", "0.40", "online", "12s ago"):
        assert cell in cam1
    assert "unreadable" in text
    new = next(line for line in text.splitlines() if "new-1" in line)
    assert "never seen" in new and "jetson-orin" in new


def test_notes_carry_problems_and_failure_reasons() -> None:
    found = fs.notes(fs.select(entries(), fs.Filters()))
    assert found[0].startswith("bad-1: status is not JSON")
    assert found[1:] == ["cam-2 digits: self-test failed"]


def test_semantic_versions_read_as_their_user_wrote_them() -> None:
    """``1.0.0`` is stored as 1000000: the table, the summary and the notes say ``1.0.0``; the
    JSON keeps the integer and adds the label."""
    updating = replace(model(version=1_000_000), state="downloading", target_version=1_001_000)
    fleet = {"cam-1": device("cam-1", model(version=1_000_000)), "cam-2": device("cam-2", updating)}
    rows = fs.select(fs.merge(fleet, {}), fs.Filters())
    console = Console(width=200, record=True)
    console.print(fs.table(rows, NOW))
    text = console.export_text()
    assert "1.0.0" in text and "1000000" not in text
    assert "digits v1.0.0 x2" in fs.summary_line(fs.summarize(rows))
    assert fs.notes(rows) == ["cam-2 digits: updating to 1.1.0"]
    digits = fs.to_json(rows)["devices"][1]["models"]["digits"]
    assert digits["version"] == 1_000_000 and digits["version_label"] == "1.0.0"
    assert digits["target_version"] == 1_001_000 and digits["target_version_label"] == "1.1.0"


def test_an_enrolment_that_fills_in_the_group_keeps_what_the_device_reported() -> None:
    reported = {"d1": DeviceView("d1", online=True, bench_job="job-7", problem="", at="now")}
    merged = fs.merge(reported, {"d1": fs.Enrolled("d1", "dock", "jetson-orin")})
    (entry,) = merged
    assert (entry.view.group, entry.view.profile) == ("dock", "jetson-orin")
    assert (entry.view.bench_job, entry.view.online, entry.view.at) == ("job-7", True, "now")
