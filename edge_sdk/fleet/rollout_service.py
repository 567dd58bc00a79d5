"""The rollout service: ``fleet rollout`` and ``fleet rollback`` as calls, made alike by the CLI
(``edge_sdk.cli.fleet_rollout_cmd``, which only parses and prints) and by the fleet benchmark
(``bench/bench_fleet.py``), so the benchmark measures the very steps an operator runs.

Each command has two halves. The check (``check_rollout``, ``check_rollback``) reads only the
repository and refuses bad input before any connection is tried. The run (``started`` then
``RolloutRun.drive``; ``roll_back``) holds the two broker sessions a rollout needs, a watch on
the devices' reports and a link that publishes, opened through ``FleetAccess`` so that the
caller decides how to reach the broker. The decisions are the pure core's
(``edge_sdk.fleet.rollout``, ``rollout_steps``); the record and the loop are
``edge_sdk.fleet.rollout_run``'s.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edge_sdk.core.bundle import check_name, format_version, parse_version
from edge_sdk.core.wire.topics import Topics, check_identifier
from edge_sdk.errors import InputError
from edge_sdk.fleet.publish import next_serial, publish_assignments
from edge_sdk.fleet.rollout import ACTIVE, Gate, Order, Rollout, plan
from edge_sdk.fleet.rollout_run import (
    Fleet,
    Report,
    begin,
    check_none_active,
    drive,
    driving,
    groups_running,
    halt_by_operator,
    load,
    usual_incumbent,
)
from edge_sdk.fleet.session import OperatorLink
from edge_sdk.signing.repository import Repository


class WatchedFleet(Fleet, Protocol):
    """The devices' reports as a rollout reads them (``edge_sdk.fleet.inventory.FleetWatch``):
    ``sync`` waits until every retained report has arrived, before planning on them."""

    def sync(self) -> None: ...


@dataclass(frozen=True)
class FleetAccess:
    """Where the operator works: the fleet repository, the keyring that signs, the fleet's
    topics, and how to open the watch and the publishing link (each opened per call)."""

    repo: Path
    keys: Path
    topics: Topics
    watch: Callable[[], AbstractContextManager[WatchedFleet]]
    link: Callable[[], AbstractContextManager[OperatorLink]]


@dataclass(frozen=True)
class RolloutRequest:
    """What ``fleet rollout MODEL [VERSION]`` asks for; ``steps`` and ``gate`` already parsed
    (``edge_sdk.fleet.rollout.parse_waves``, ``Gate``)."""

    model: str
    version: str | None  # as given to build --version; None only to resume
    steps: tuple[str, ...]
    gate: Gate
    group: str | None = None
    resume: bool = False


@dataclass(frozen=True)
class RolloutStart:
    """A rollout checked against the repository, before any connection: the recorded one to
    resume, or the release (version, label, the profiles it has variants for) to plan."""

    request: RolloutRequest
    resumed: Rollout | None = None
    version: int = 0
    label: str = ""
    profiles: tuple[str, ...] = ()


def check_rollout(
    repo: Path, keys: Path, request: RolloutRequest, *, report: Report = lambda _line: None
) -> RolloutStart:
    """Refuse what the repository already rules out: nothing to resume, a resume of another
    version, a rollout still active, a release that was never published."""
    model, version = request.model, request.version
    if request.resume:
        record = load(repo, model)
        if record is None or record.phase not in ACTIVE:
            state = "no rollout" if record is None else f"its last rollout is {record.phase}"
            raise InputError(f"nothing to resume: {repo} holds {state} of {model}")
        if version is not None and parse_version(version)[0] != record.version:
            raise InputError(
                f"--resume: the recorded rollout is of v{record.label}, not {version}; "
                "drop VERSION to continue it"
            )
        report(f"resuming {model} v{record.label}: {record.phase}, wave {record.wave + 1}")
        return RolloutStart(request, resumed=record)
    if version is None:
        raise InputError("give the VERSION to roll out, or --resume a recorded rollout")
    number, label = parse_version(version)
    check_none_active(repo, model)
    variants = Repository.open(repo, keys).release_variants(model, number)
    if not variants:
        raise InputError(
            f"{model} v{label} is not in {repo}; `edge-sdk fleet publish` its bundle first"
        )
    return RolloutStart(request, version=number, label=label, profiles=tuple(sorted(variants)))


@dataclass(frozen=True)
class RolloutRun:
    """A rollout under way: its record (begun or resumed) and the sessions it drives with."""

    record: Rollout
    access: FleetAccess
    fleet: WatchedFleet
    link: OperatorLink

    def drive(
        self,
        *,
        report: Report = lambda _line: None,
        live: Report = lambda _line: None,
        heartbeat_s: float = math.inf,
    ) -> Rollout:
        """Wave by wave to ``completed`` or ``halted`` (``edge_sdk.fleet.rollout_run.drive``)."""
        access, model = self.access, self.record.model

        def publish(todo: Sequence[Order], serial: int) -> None:
            triples = [(o.scope, o.version, o.rollback) for o in todo]
            publish_assignments(
                access.keys, self.link, access.topics, model=model, serial=serial, orders=triples
            )

        return drive(
            self.record,
            access.repo,
            self.fleet,
            publish,
            report=report,
            live=live,
            heartbeat_s=heartbeat_s,
        )


@contextlib.contextmanager
def started(
    access: FleetAccess, start: RolloutStart, *, report: Report = lambda _line: None
) -> Iterator[RolloutRun]:
    """Hold the rollout's lock and its two sessions; a new rollout is planned on the devices'
    reports (the skipped ones and the waves reported) and its record begun."""
    request = start.request
    with (
        driving(access.repo, request.model),
        access.watch() as fleet,
        access.link() as link,
    ):
        fleet.sync()
        record = start.resumed
        if record is None:
            planned = plan(
                request.model,
                start.version,
                start.label,
                start.profiles,
                fleet.devices(),
                steps=request.steps,
                gate=request.gate,
                group=request.group,
            )
            for device, why in planned.skipped.items():
                report(f"  skipping {device}: {why}")
            sizes = " + ".join(str(len(w)) for w in planned.waves)
            report(
                f"rollout of {request.model} v{start.label} ({', '.join(start.profiles)}): "
                f"{len(planned.devices)} devices in waves {sizes}"
            )
            record = begin(access.repo, planned, time.time())
        yield RolloutRun(record, access, fleet, link)


@dataclass(frozen=True)
class RollbackTarget:
    """What ``fleet rollback`` goes back to, checked before any connection."""

    model: str
    version: int
    label: str
    group: str | None = None


def check_rollback(repo: Path, model: str, to: str | None, group: str | None) -> RollbackTarget:
    """``to`` as given, or else the version most of the last rollout's devices ran before."""
    check_name(model)
    if group is not None:
        check_identifier(group, "--group")
    if to is not None:
        number, label = parse_version(to)
        return RollbackTarget(model, number, label, group)
    record = load(repo, model)
    incumbent = usual_incumbent(record) if record is not None else None
    if incumbent is None:
        raise InputError(
            f"no rollout of {model} in {repo} says what came before; pass --to VERSION"
        )
    return RollbackTarget(model, incumbent, format_version(incumbent), group)


@dataclass(frozen=True)
class RollbackResult:
    target: RollbackTarget
    groups: tuple[str, ...]
    serial: int
    stopped: Rollout | None  # the rollout still active that the rollback halted

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.target.model,
            "version": self.target.version,
            "version_label": self.target.label,
            "groups": list(self.groups),
            "serial": self.serial,
            "stopped_rollout": None if self.stopped is None else self.stopped.label,
        }


def roll_back(access: FleetAccess, target: RollbackTarget) -> RollbackResult:
    """A signed rollback assignment per group (newer than any wave's), after halting any
    rollout of the model still in progress."""
    model = target.model
    with access.watch() as fleet, access.link() as link:
        fleet.sync()
        if target.group is not None:
            groups: tuple[str, ...] = (target.group,)
        else:
            groups = groups_running(fleet.devices(), model)
        if not groups:
            raise InputError(f"no device reports running {model}; pass --group to roll back one")
        why = f"rolled back to v{target.label} by the operator"
        stopped = halt_by_operator(access.repo, model, why, time.time())
        serial = next_serial(access.repo)
        publish_assignments(
            access.keys,
            link,
            access.topics,
            model=model,
            serial=serial,
            orders=[(f"groups/{g}", target.version, True) for g in groups],
        )
    return RollbackResult(target, groups, serial, stopped)
