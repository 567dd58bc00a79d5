"""The rollout's shell (edge_sdk.fleet.rollout_run) with a fake fleet: devices that "install" what
is
published to them. The real fleet is in test_rollout_fleet.py; these pin down the record on
disk, the locks and the order of publishes, without a broker."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from edge_sdk.errors import InputError
from edge_sdk.fleet.inventory import DeviceView, ModelView
from edge_sdk.fleet.rollout import Gate, Order, Phase, Rollout, parse_waves, plan, summary
from edge_sdk.fleet.rollout_run import (
    begin,
    driving,
    halt_by_operator,
    load,
    record_path,
    usual_incumbent,
)
from edge_sdk.fleet.rollout_run import drive as run_drive


class FakeFleet:
    """Ten devices on v1; a device assigned a version commits it at once, unless it is in
    ``broken``, where it fails under the assignment's serial."""

    def __init__(self, n: int = 10, broken: frozenset[str] = frozenset()) -> None:
        self.views = {f"d{i}": self._view(f"d{i}", 1, "committed", 0) for i in range(n)}
        self.broken = broken
        self.published: list[tuple[int, tuple[Order, ...]]] = []

    @staticmethod
    def _view(device: str, version: int, state: str, serial: int) -> DeviceView:
        model = ModelView("digits", version, state, serial=serial, reason="golden vectors")
        return DeviceView(
            device, True, "lobby", "x86-64", "2026-11-30T00:00:00Z", {"digits": model}
        )

    def devices(self) -> dict[str, DeviceView]:
        return dict(self.views)

    def wait_change(self, timeout: float) -> None:
        pass

    def publish(self, orders: Sequence[Order], serial: int) -> None:
        self.published.append((serial, tuple(orders)))
        for order in orders:
            kind, who = order.scope.split("/", 1)
            targets = [who] if kind == "devices" else list(self.views)
            for device in targets:
                if device in self.broken and not order.rollback:
                    self.views[device] = self._view(device, 1, "failed", serial)
                else:
                    self.views[device] = self._view(device, order.version, "committed", serial)


def start(tmp_path: Path, fleet: FakeFleet, steps: str = "1,50%,100%") -> Rollout:
    planned = plan(
        "digits", 2, "2", "x86-64", fleet.devices(), steps=parse_waves(steps), gate=Gate()
    )
    return begin(tmp_path, planned, 1000.0)


def test_drive_publishes_each_wave_then_the_group_and_records_completion(tmp_path: Path) -> None:
    fleet = FakeFleet()
    record = start(tmp_path, fleet)
    lines: list[str] = []
    final = run_drive(record, tmp_path, fleet, fleet.publish, report=lines.append)
    assert final.phase == Phase.COMPLETED
    assert [len(orders) for _, orders in fleet.published] == [1, 4, 5, 1]
    assert fleet.published[-1][1] == (Order("groups/lobby", 2),)
    serials = [serial for serial, _ in fleet.published]
    assert serials == sorted(set(serials))  # a new serial per phase, always growing
    assert load(tmp_path, "digits") == final
    assert any(line.startswith("wave 3 passed: 5 committed") for line in lines)


def test_a_broken_canary_halts_and_only_the_canary_was_ever_assigned(tmp_path: Path) -> None:
    fleet = FakeFleet()
    record = start(tmp_path, fleet)
    canary = record.waves[0][0]
    fleet.broken = frozenset({canary})
    final = run_drive(record, tmp_path, fleet, fleet.publish)
    assert final.phase == Phase.HALTED and f"first: {canary}: failed" in final.reason
    assigned = [o for _, orders in fleet.published for o in orders if not o.rollback]
    assert assigned == [Order(f"devices/{canary}", 2)]
    assert all(v.models["digits"].version == 1 for v in fleet.views.values())


def test_a_rollback_by_the_operator_stops_a_running_drive_before_its_next_publish(
    tmp_path: Path,
) -> None:
    fleet = FakeFleet()
    record = start(tmp_path, fleet)

    def publish_then_halt(orders: Sequence[Order], serial: int) -> None:
        fleet.publish(orders, serial)
        if len(fleet.published) == 2:  # the second wave is out: the operator rolls back
            halt_by_operator(tmp_path, "digits", "rolled back to v1 by the operator", 1001.0)

    lines: list[str] = []
    final = run_drive(record, tmp_path, fleet, publish_then_halt, report=lines.append)
    assert final.phase == Phase.HALTED and final.reason == "rolled back to v1 by the operator"
    assert len(fleet.published) == 2  # no third wave, no group assignment
    assert "stopped: rolled back to v1 by the operator" in lines
    assert summary(final)["rolled_back"] == []  # the operator's rollback went to the group
    assert load(tmp_path, "digits") == final


def test_one_driver_at_a_time(tmp_path: Path) -> None:
    with driving(tmp_path, "digits"):
        refused = pytest.raises(InputError, match="another `edge-sdk fleet rollout digits`")
        with refused, driving(tmp_path, "digits"):
            pass
        with driving(tmp_path, "other-model"):
            pass
    with driving(tmp_path, "digits"):  # released with the first holder
        pass


def test_a_finished_rollout_is_archived_and_an_unfinished_one_blocks_a_new_one(
    tmp_path: Path,
) -> None:
    fleet = FakeFleet()
    first = start(tmp_path, fleet)
    with pytest.raises(InputError, match="is still assigning"):
        start(tmp_path, fleet)
    done = run_drive(first, tmp_path, fleet, fleet.publish)
    second = start(tmp_path, fleet)
    archived = record_path(tmp_path, "digits").with_suffix(f".{done.serial}.json")
    assert json.loads(archived.read_text())["phase"] == "completed"
    assert load(tmp_path, "digits") == second
    assert usual_incumbent(replace(done, incumbents={"a": 1, "b": 1, "c": 3, "d": None})) == 1


class TricklingFleet(FakeFleet):
    """A big wave whose devices commit over ``spread_s`` seconds, one report at a time; every
    report wakes the driver at once, as a flood of status messages does."""

    def __init__(self, n: int, spread_s: float) -> None:
        super().__init__(n)
        self.spread_s = spread_s
        self.pending: list[tuple[float, str, int, int]] = []
        self.reads = 0

    def _arrived(self) -> None:
        now = time.monotonic()
        while self.pending and self.pending[0][0] <= now:
            _, device, version, serial = self.pending.pop(0)
            self.views[device] = self._view(device, version, "committed", serial)

    def devices(self) -> dict[str, DeviceView]:
        self.reads += 1
        self._arrived()
        return super().devices()

    def wait_change(self, timeout: float) -> None:
        if self.pending:
            time.sleep(max(0.0, min(timeout, self.pending[0][0] - time.monotonic())))

    def publish(self, orders: Sequence[Order], serial: int) -> None:
        self.published.append((serial, tuple(orders)))
        devices = [o.scope.split("/", 1)[1] for o in orders if o.scope.startswith("devices/")]
        start = time.monotonic()
        for i, device in enumerate(devices):
            due = start + self.spread_s * (i + 1) / len(devices)
            self.pending.append((due, device, orders[0].version, serial))


def test_a_flood_of_reports_is_judged_in_batches_not_once_per_report(tmp_path: Path) -> None:
    # Judging reads the whole fleet: once per report, a wave of N costs O(N^2) (10,000
    # simulated devices took 546 s and 15.6 ms of controller CPU per device). 400 reports
    # arriving over a second are judged in batches (judging once per report read the fleet
    # about 190 times here).
    fleet = TricklingFleet(400, spread_s=1.0)
    record = start(tmp_path, fleet, "100%")
    final = run_drive(record, tmp_path, fleet, fleet.publish)
    assert final.phase == Phase.COMPLETED
    assert fleet.reads < 100, fleet.reads
