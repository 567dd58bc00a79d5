"""Canary rollouts, the shell around the pure core (``edge_sdk.fleet.rollout`` and
``rollout_steps``): keeps the record on disk, publishes the assignments each phase orders, and
feeds the devices' reports to the core.

The record (``<repo>/rollouts/<model>.json``) is written atomically *before* each publish, so a
rollout whose operator machine dies at any moment resumes with ``fleet rollout --resume``: the
phase it finds says what to publish again (assignments carry the phase's serial, so a device
that already saw one ignores the repeat) or which wave to keep watching.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.errors import InputError, OutputError
from edge_sdk.fleet.inventory import DeviceView
from edge_sdk.fleet.publish import next_serial
from edge_sdk.fleet.rollout import ACTIVE, DeviceResult, Order, Phase, Rollout, Verdict
from edge_sdk.fleet.rollout_steps import advance, judge_wave, orders, published, wave_progress

ROLLOUTS_DIR = "rollouts"
# See ``drive``: how long reports gather before a wave is judged again, per device of the wave.
JUDGE_EVERY_S_PER_DEVICE = 50e-6
MAX_COALESCE_S = 0.25


class Fleet(Protocol):
    """Where the devices' latest reports come from (``edge_sdk.fleet.inventory.FleetWatch``)."""

    def devices(self) -> dict[str, DeviceView]: ...

    def wait_change(self, timeout: float) -> None: ...


# Publish one phase's orders, all signed with ``serial``; return once the broker acknowledged.
Publish = Callable[[Sequence[Order], int], None]
# Progress for the terminal: one human line per thing that happened.
Report = Callable[[str], None]


def record_path(repo_dir: Path, model: str) -> Path:
    return repo_dir / ROLLOUTS_DIR / f"{model}.json"


@contextlib.contextmanager
def _flock(path: Path, *, wait: bool) -> Iterator[bool]:
    """An advisory lock on ``path``; yields whether it was taken. The kernel drops it when the
    holder dies, so a SIGKILLed rollout never leaves a stale lock behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise OutputError(f"cannot create the lock {path}: {e.strerror}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def driving(repo_dir: Path, model: str) -> Iterator[None]:
    """Held while one process drives the rollout of ``model``: a second one is refused."""
    path = repo_dir / ROLLOUTS_DIR / f".{model}.driver.lock"
    with _flock(path, wait=False) as taken:
        if not taken:
            raise InputError(
                f"another `edge-sdk fleet rollout {model}` is running on this repository "
                f"({repo_dir}); wait for it, or stop it before resuming"
            )
        yield


def _writing(repo_dir: Path, model: str) -> contextlib.AbstractContextManager[bool]:
    # Short: held around a read-check-write of the record, never across a publish.
    return _flock(repo_dir / ROLLOUTS_DIR / f".{model}.write.lock", wait=True)


def load(repo_dir: Path, model: str) -> Rollout | None:
    path = record_path(repo_dir, model)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"cannot read the rollout record {path}: {e.strerror}") from e
    try:
        return Rollout.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(
            f"{path} is not a rollout record ({type(e).__name__}: {e}); move it away to start "
            "a new rollout"
        ) from e


def save(repo_dir: Path, rollout: Rollout) -> None:
    path = record_path(repo_dir, rollout.model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {path.parent}: {e.strerror}") from e
    write_bytes_atomic(path, json.dumps(rollout.to_json(), indent=1, sort_keys=True).encode())


def check_none_active(repo_dir: Path, model: str) -> Rollout | None:
    """The last, finished rollout of ``model``, if any; an unfinished one is an error."""
    previous = load(repo_dir, model)
    if previous is not None and previous.phase in ACTIVE:
        raise InputError(
            f"a rollout of {previous.model} v{previous.label} is still {previous.phase} "
            f"(wave {previous.wave + 1}/{len(previous.waves)}); continue it with "
            f"`edge-sdk fleet rollout {previous.model} --resume` or stop it with "
            f"`edge-sdk fleet rollback {previous.model}`"
        )
    return previous


def begin(repo_dir: Path, planned: Rollout, now: float) -> Rollout:
    """Persist a planned rollout as its first phase; a finished one is kept beside it."""
    previous = check_none_active(repo_dir, planned.model)
    if previous is not None:
        archive = record_path(repo_dir, planned.model).with_suffix(f".{previous.serial}.json")
        write_bytes_atomic(archive, json.dumps(previous.to_json(), sort_keys=True).encode())
    started = replace(planned, phase=Phase.ASSIGNING, serial=next_serial(repo_dir), since=now)
    save(repo_dir, started)
    return started


def drive(
    rollout: Rollout,
    repo_dir: Path,
    fleet: Fleet,
    publish: Publish,
    *,
    report: Report = lambda _line: None,
    live: Report = lambda _line: None,
    clock: Callable[[], float] = time.time,
    poll_s: float = 0.5,
    coalesce_s: float = JUDGE_EVERY_S_PER_DEVICE,
    heartbeat_s: float = math.inf,
) -> Rollout:
    """Run the rollout to ``completed`` or ``halted``; every step is saved before it acts.

    A judgement reads every device of the fleet and the wave, so judging on each report would
    cost O(devices) per report, O(devices²) per wave. Reports arriving together are judged
    together instead: at most once per ``coalesce_s`` x wave size (capped at ``MAX_COALESCE_S``),
    a few milliseconds for small waves, a quarter second for thousands of devices, which keeps
    the controller's CPU per device flat as fleets grow (bench/bench_fleet.py --scale).

    While a wave is waited on, a ``waiting:`` line goes to ``report`` every ``heartbeat_s``
    (where it stands, how long until the timeout): a log or a pipe is never silent for long."""
    seen: dict[str, DeviceResult] = {}
    record_stamp = -1
    judged_at = -math.inf
    beat_at = time.monotonic()
    while rollout.phase in ACTIVE:
        if rollout.phase != Phase.WATCHING:
            todo = orders(rollout)
            report(_announce(rollout, todo))
            publish(todo, rollout.serial)
            rollout = _save_unless_stopped(repo_dir, published(rollout, clock()), report)
            continue
        pause = min(MAX_COALESCE_S, coalesce_s * len(rollout.waves[rollout.wave]))
        if (wait := judged_at + pause - time.monotonic()) > 0:
            time.sleep(wait)  # let the reports of a busy wave gather
        judged_at = time.monotonic()
        judgement = judge_wave(rollout, fleet.devices(), clock())
        progress = wave_progress(rollout, judgement, clock())
        live(progress)
        if judged_at - beat_at >= heartbeat_s:
            beat_at = judged_at
            report(f"  waiting: {progress}")
        for device, result in judgement.results.items():
            if seen.get(device) != result:
                seen[device] = result
                if result.verdict != Verdict.PENDING or result.reason != "assigned":
                    report(f"  {device}: {result.verdict}{_why(result)}")
        moving = bool(judgement.halt) or judgement.passed
        following = advance(rollout, judgement, clock(), next_serial(repo_dir) if moving else 0)
        if following is rollout:
            # `fleet rollback` may have halted the record; read it only when it changed, since
            # this runs on every status report the fleet sends.
            stamp = _mtime_ns(record_path(repo_dir, rollout.model))
            if stamp != record_stamp:
                record_stamp = stamp
                on_disk = load(repo_dir, rollout.model)
                if on_disk is not None and on_disk.phase == Phase.HALTED:
                    report(f"stopped: {on_disk.reason}")
                    return on_disk
            fleet.wait_change(poll_s)
            continue
        if following.phase != Phase.WATCHING:
            report(_wave_done(rollout, following, judgement.halt))
        elif following.settled_at and not rollout.settled_at and rollout.gate.bake_s:
            report(f"  wave {rollout.wave + 1} settled; watching it {rollout.gate.bake_s:g} s")
        rollout = _save_unless_stopped(repo_dir, following, report)
    return rollout


def _save_unless_stopped(repo_dir: Path, rollout: Rollout, report: Report) -> Rollout:
    """Save the next step, unless ``fleet rollback`` halted the rollout meanwhile: then the
    halted record stands and nothing more is published."""
    with _writing(repo_dir, rollout.model):
        on_disk = load(repo_dir, rollout.model)
        if on_disk is not None and on_disk.phase == Phase.HALTED and rollout.phase != Phase.HALTED:
            report(f"stopped: {on_disk.reason}")
            return on_disk
        save(repo_dir, rollout)
        return rollout


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def halt_by_operator(repo_dir: Path, model: str, reason: str, now: float) -> Rollout | None:
    """Stop an active rollout of ``model`` (``fleet rollback``); ``None`` when none is active."""
    with _writing(repo_dir, model):
        current = load(repo_dir, model)
        if current is None or current.phase not in ACTIVE:
            return None
        stopped = replace(current, phase=Phase.HALTED, reason=reason, since=now)
        save(repo_dir, stopped)
        return stopped


def usual_incumbent(rollout: Rollout) -> int | None:
    """The version most of the rollout's devices ran before it: where a rollback goes."""
    counts = Counter(v for v in rollout.incumbents.values() if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def groups_running(views: Mapping[str, DeviceView], model: str) -> tuple[str, ...]:
    return tuple(sorted({v.group for v in views.values() if v.model(model) and v.group}))


def _announce(rollout: Rollout, todo: Sequence[Order]) -> str:
    if rollout.phase == Phase.ASSIGNING:
        return (
            f"wave {rollout.wave + 1}/{len(rollout.waves)}: assigning {rollout.model} "
            f"v{rollout.label} to {len(todo)} device(s) (serial {rollout.serial})"
        )
    if rollout.phase == Phase.FINALIZING:
        groups = ", ".join(o.scope for o in todo) or "no group (the waves stopped short of 100%)"
        return f"every wave passed; assigning v{rollout.label} to {groups} for late devices"
    return f"halting: rolling {len(todo)} device(s) back to the version each ran before"


def _wave_done(before: Rollout, after: Rollout, halt: str) -> str:
    if halt:
        return f"HALT: {halt}"
    results = [after.results[d] for d in before.waves[before.wave] if d in after.results]
    counts = Counter(r.verdict for r in results)
    return (
        f"wave {before.wave + 1} passed: {counts[Verdict.PASSED]} committed, "
        f"{counts[Verdict.FAILED]} failed, {counts[Verdict.OFFLINE]} offline"
    )


def _why(result: DeviceResult) -> str:
    return f" ({result.reason})" if result.reason else ""
