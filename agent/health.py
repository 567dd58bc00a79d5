"""Probation's health gate: is the new version's own traffic as healthy as the budget and the
version it replaced? Pure: figures in, a reason to roll back (or ``None``) out."""

from __future__ import annotations

from agent.config import ProbationConfig
from agent.serving.slots import InferenceFigures

# The previous version's p95 is only a fair yardstick once it has served this many requests.
MIN_BASELINE_REQUESTS = 20


def probation_failure(
    new: InferenceFigures,
    previous: InferenceFigures | None,
    rules: ProbationConfig,
    *,
    latency_budget_ms: float,
    window_over: bool,
) -> str | None:
    """Why the new version fails probation, or ``None`` while it passes.

    The error rate is judged as soon as ``min_requests`` have been served (a version that
    fails requests should not serve the whole window); latency at the end of the window, when
    p95 rests on the window's traffic rather than its first requests.
    """
    if new.count == 0 or new.count < rules.min_requests:
        return None
    if new.error_rate > rules.max_error_rate:
        return (
            f"error rate {new.error_rate:.1%} over {new.count} requests is above the "
            f"{rules.max_error_rate:.1%} limit"
        )
    if not window_over:
        return None
    if latency_budget_ms and new.p95_ms > latency_budget_ms:
        return f"latency p95 {new.p95_ms:.2f} ms is over the budget of {latency_budget_ms:g} ms"
    if (
        previous is not None
        and previous.count >= MIN_BASELINE_REQUESTS
        and previous.p95_ms > 0
        and new.p95_ms > previous.p95_ms * rules.max_latency_ratio
    ):
        return (
            f"latency p95 {new.p95_ms:.2f} ms is {new.p95_ms / previous.p95_ms:.1f}x the "
            f"previous version's {previous.p95_ms:.2f} ms on this device (limit "
            f"{rules.max_latency_ratio:g}x)"
        )
    return None
