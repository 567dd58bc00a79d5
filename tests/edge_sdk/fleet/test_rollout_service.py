"""The rollout service (edge_sdk.fleet.rollout_service), the calls ``fleet rollout|rollback`` and
bench/bench_fleet.py make: its checks against a real repository, and a whole rollout and a
rollback over the fake fleet of test_rollout_run.py (publishing is the only seam replaced)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from edge_sdk.core.wire.topics import Topics
from edge_sdk.errors import InputError
from edge_sdk.fleet import rollout_service
from edge_sdk.fleet.publish import open_or_create
from edge_sdk.fleet.rollout import Gate, Order, Phase, parse_waves
from edge_sdk.fleet.rollout_run import load
from edge_sdk.fleet.rollout_service import (
    FleetAccess,
    RolloutRequest,
    check_rollback,
    check_rollout,
    roll_back,
    started,
)
from edge_sdk.fleet.session import OperatorLink
from testing.agents import make_bundle
from tests.edge_sdk.fleet.test_rollout_run import FakeFleet


class SyncedFleet(FakeFleet):
    def sync(self) -> None:
        pass


@pytest.fixture()
def repo(tmp_path: Path, keyring: Path) -> Path:
    repo = tmp_path / "repo"
    open_or_create(repo, keyring).add_bundle(make_bundle(keyring, 2))
    return repo


def access(repo: Path, keyring: Path, fleet: SyncedFleet, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Publishing goes straight to the fake fleet, as a signed assignment would reach it."""

    def publish(*_a: Any, serial: int, orders: Sequence[tuple[str, int, bool]], **_k: Any) -> None:
        fleet.publish([Order(*o) for o in orders], serial)

    monkeypatch.setattr(rollout_service, "publish_assignments", publish)
    return FleetAccess(
        repo,
        keyring,
        Topics("edge", "default"),
        watch=lambda: contextlib.nullcontext(fleet),
        link=lambda: contextlib.nullcontext(cast(OperatorLink, None)),
    )


def request(version: str | None = "2", **kw: Any) -> RolloutRequest:
    return RolloutRequest("digits", version, parse_waves("1,50%,100%"), Gate(), **kw)


def test_the_checks_refuse_before_any_connection(repo: Path, keyring: Path) -> None:
    with pytest.raises(InputError, match="give the VERSION to roll out, or --resume"):
        check_rollout(repo, keyring, request(None))
    with pytest.raises(InputError, match="digits v7 is not in"):
        check_rollout(repo, keyring, request("7"))
    with pytest.raises(InputError, match=r"nothing to resume: .* holds no rollout of digits"):
        check_rollout(repo, keyring, request(None, resume=True))
    start = check_rollout(repo, keyring, request("2"))
    assert (start.version, start.label, start.profiles, start.resumed) == (
        2,
        "2",
        ("x86-64",),
        None,
    )


def test_a_rollout_runs_through_the_service_then_resume_and_rollback_see_its_record(
    repo: Path, keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = SyncedFleet()
    lines: list[str] = []
    start = check_rollout(repo, keyring, request())
    with started(access(repo, keyring, fleet, monkeypatch), start, report=lines.append) as run:
        final = run.drive(report=lines.append)
    assert final.phase == Phase.COMPLETED and load(repo, "digits") == final
    assert lines[0] == "rollout of digits v2 (x86-64): 10 devices in waves 1 + 4 + 5"
    assert [len(orders) for _, orders in fleet.published] == [1, 4, 5, 1]
    with pytest.raises(InputError, match="its last rollout is completed"):
        check_rollout(repo, keyring, request(resume=True))
    # Back to what the rollout replaced, for every group running the model.
    target = check_rollback(repo, "digits", None, None)
    assert (target.version, target.label) == (1, "1")
    done = roll_back(access(repo, keyring, fleet, monkeypatch), target)
    assert done.to_json() == {
        "model": "digits",
        "version": 1,
        "version_label": "1",
        "groups": ["lobby"],
        "serial": fleet.published[-1][0],
        "stopped_rollout": None,
    }
    assert fleet.published[-1][1] == (Order("groups/lobby", 1, True),)


def test_rollback_checks_its_input_first(repo: Path) -> None:
    with pytest.raises(InputError, match="no rollout of digits in"):
        check_rollback(repo, "digits", None, None)
    with pytest.raises(InputError, match="--group: '#' must be"):
        check_rollback(repo, "digits", "1", "#")
    assert check_rollback(repo, "digits", "1.2.3", "lab").version == 1002003
