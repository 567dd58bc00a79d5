"""Canary rollouts, the decision core's second half: a running rollout's steps. Which verdict each
device of the current wave earns, when the wave has passed or the rollout must halt, the record
that follows, and the assignments each phase publishes. Pure: device views and the clock in, a
new ``Rollout`` record (``edge_sdk.fleet.rollout``) and its orders out.

Per device and wave, the verdict comes from its own retained status, matched to the
assignment serial this rollout published: ``passed`` (committed the version and, after the
fleet-level bake, its health figures did not regress against the version it replaced),
``failed`` (its self-test or probation failed, it refused, regressed, or did not report in time
while online), ``offline`` (counted and reported, never waited on) or ``pending``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from edge_sdk.fleet.inventory import DeviceView, ModelView
from edge_sdk.fleet.rollout import DeviceResult, Gate, Order, Phase, Rollout, Verdict

# --- judging ----------------------------------------------------------------------------------


def health_regression(m: ModelView, gate: Gate) -> str:
    """Why the new version's serving figures are worse than the version it replaced on this
    device, or ``""``. Figures resting on fewer than ``min_requests`` requests are not judged."""
    new, old = m.inference, m.previous
    if new is None or new.count < gate.min_requests:
        return ""
    baseline = old if old is not None and old.count >= gate.min_requests else None
    allowed = (baseline.error_rate if baseline else 0.0) + gate.max_error_rate_increase
    if new.error_rate > allowed:
        was = f"{baseline.error_rate:.1%}" if baseline else "no baseline"
        return (
            f"error rate {new.error_rate:.1%} over {new.count} requests (incumbent {was}; "
            f"allowed +{gate.max_error_rate_increase:.1%})"
        )
    if baseline and baseline.p95_ms > 0 and new.p95_ms > baseline.p95_ms * gate.max_latency_ratio:
        return (
            f"latency p95 {new.p95_ms:.2f} ms is {new.p95_ms / baseline.p95_ms:.1f}x the "
            f"incumbent's {baseline.p95_ms:.2f} ms (limit {gate.max_latency_ratio:g}x)"
        )
    return ""


def device_verdict(
    rollout: Rollout, view: DeviceView | None, now: float, *, baked: bool
) -> DeviceResult:
    """One device of the current wave, from its latest status."""
    wave = rollout.wave
    m = view.model(rollout.model) if view is not None else None
    if view is None or m is None:
        return DeviceResult(Verdict.OFFLINE, "has not reported", wave)
    ours = m.serial == rollout.serial
    if m.version == rollout.version and m.state == "committed":
        reason = health_regression(m, rollout.gate) if baked else ""
        if reason:
            return DeviceResult(Verdict.FAILED, reason, wave)
        return DeviceResult(Verdict.PASSED, "", wave)
    if ours and m.state in ("failed", "rolled_back"):
        return DeviceResult(Verdict.FAILED, f"{m.state}: {m.reason or 'no reason given'}", wave)
    if m.last_result == "refused" and m.last_result_version == rollout.version:
        return DeviceResult(Verdict.FAILED, f"refused: {m.last_result_reason}", wave)
    if view.online is False:
        return DeviceResult(Verdict.OFFLINE, "offline", wave)
    if now - rollout.since > rollout.gate.wave_timeout_s:
        state = m.state if ours else "no sign of the assignment"
        return DeviceResult(
            Verdict.FAILED,
            f"no result within --wave-timeout {rollout.gate.wave_timeout_s:g} s ({state})",
            wave,
        )
    return DeviceResult(Verdict.PENDING, m.state if ours else "assigned", wave)


@dataclass(frozen=True)
class WaveJudgement:
    results: Mapping[str, DeviceResult]
    halt: str = ""  # why the rollout must halt, or ""
    passed: bool = False
    settled: bool = False  # nothing pending (the bake may still be running)

    def count(self, verdict: Verdict) -> int:
        return sum(r.verdict == verdict for r in self.results.values())


def judge_wave(rollout: Rollout, views: Mapping[str, DeviceView], now: float) -> WaveJudgement:
    gate = rollout.gate
    baked = gate.bake_s == 0 or (rollout.settled_at > 0 and now - rollout.settled_at >= gate.bake_s)
    devices = rollout.waves[rollout.wave]
    results = {d: device_verdict(rollout, views.get(d), now, baked=baked) for d in devices}
    judged = WaveJudgement(results)
    failed = judged.count(Verdict.FAILED)
    # Pending devices can only pass, fail or drop offline, so the rate over every device not
    # offline is a floor on the final one: halt as soon as it is already too high.
    reachable = len(devices) - judged.count(Verdict.OFFLINE)
    if failed and failed / max(reachable, 1) > gate.max_failure_rate:
        worst = next(f"{d}: {r.reason}" for d, r in results.items() if r.verdict == Verdict.FAILED)
        return replace(
            judged,
            halt=(
                f"wave {rollout.wave + 1}: {failed} of {reachable} devices failed "
                f"(limit {gate.max_failure_rate:.0%}); first: {worst}"
            ),
        )
    if judged.count(Verdict.PENDING):
        return judged
    earlier = sum(r.verdict == Verdict.PASSED for r in rollout.results.values())
    if judged.count(Verdict.PASSED) + earlier == 0:
        return replace(
            judged,
            halt=f"wave {rollout.wave + 1}: no device online to judge the version on",
        )
    return replace(judged, settled=True, passed=baked)


def wave_progress(rollout: Rollout, judgement: WaveJudgement, now: float) -> str:
    """One line for a terminal's live status: where the current wave stands."""
    order = (Verdict.PASSED, Verdict.FAILED, Verdict.PENDING, Verdict.OFFLINE)
    counts = ", ".join(
        f"{judgement.count(v)} {v}" for v in order if judgement.count(v) or v == Verdict.PASSED
    )
    line = f"wave {rollout.wave + 1}/{len(rollout.waves)}: {counts}"
    if rollout.settled_at and rollout.gate.bake_s:
        left = max(0.0, rollout.gate.bake_s - (now - rollout.settled_at))
        line += f"; watching health, {left:.0f} s left"
    elif judgement.count(Verdict.PENDING):
        left = max(0.0, rollout.gate.wave_timeout_s - (now - rollout.since))
        line += f"; timeout in {left:.0f} s"
    return line


# --- moving on ----------------------------------------------------------------------------------


def advance(rollout: Rollout, judgement: WaveJudgement, now: float, next_serial: int) -> Rollout:
    """The record after a judgement of the current wave (unchanged while it is pending)."""
    if rollout.phase != Phase.WATCHING:
        return rollout
    if judgement.halt:
        return replace(
            rollout,
            phase=Phase.ROLLING_BACK,
            serial=next_serial,
            since=now,
            results={**rollout.results, **judgement.results},
            reason=judgement.halt,
        )
    if not judgement.settled:
        return replace(rollout, settled_at=0.0) if rollout.settled_at else rollout
    if not judgement.passed:
        return rollout if rollout.settled_at else replace(rollout, settled_at=now)
    results = {**rollout.results, **judgement.results}
    if rollout.wave + 1 < len(rollout.waves):
        return replace(
            rollout,
            phase=Phase.ASSIGNING,
            wave=rollout.wave + 1,
            serial=next_serial,
            since=now,
            settled_at=0.0,
            results=results,
        )
    return replace(rollout, phase=Phase.FINALIZING, serial=next_serial, since=now, results=results)


def orders(rollout: Rollout) -> tuple[Order, ...]:
    """What the shell publishes for the phase the record is in."""
    if rollout.phase == Phase.ASSIGNING:
        return tuple(Order(f"devices/{d}", rollout.version) for d in rollout.waves[rollout.wave])
    if rollout.phase == Phase.FINALIZING:
        # Devices enrolled later, or offline throughout, take the version from their group.
        return tuple(Order(f"groups/{g}", rollout.version) for g in rollout.groups)
    if rollout.phase == Phase.ROLLING_BACK:
        return tuple(
            Order(f"devices/{d}", version, rollback=True)
            for d in rollout.reached
            if (version := rollout.incumbents.get(d)) is not None and version != rollout.version
        )
    return ()


def published(rollout: Rollout, now: float) -> Rollout:
    """The record once the phase's orders are acknowledged by the broker."""
    following = {
        Phase.ASSIGNING: Phase.WATCHING,
        Phase.FINALIZING: Phase.COMPLETED,
        Phase.ROLLING_BACK: Phase.HALTED,
    }
    if rollout.phase not in following:
        return rollout
    sent_back = rollout.rolled_back
    if rollout.phase == Phase.ROLLING_BACK:
        sent_back = tuple(o.scope.split("/", 1)[1] for o in orders(rollout))
    return replace(rollout, phase=following[rollout.phase], since=now, rolled_back=sent_back)
