"""Probation's health gate, as a pure function of the figures."""

from __future__ import annotations

from agent.config import ProbationConfig
from agent.health import MIN_BASELINE_REQUESTS, probation_failure
from agent.serving.slots import InferenceFigures

RULES = ProbationConfig(min_requests=20, max_error_rate=0.05, max_latency_ratio=1.5)


def figures(count: int, errors: int = 0, p95: float = 1.0) -> InferenceFigures:
    return InferenceFigures(count, errors, errors / count if count else 0.0, p95 / 2, p95)


def verdict(
    new: InferenceFigures,
    previous: InferenceFigures | None = None,
    *,
    budget: float = 0.0,
    over: bool = True,
) -> str | None:
    return probation_failure(new, previous, RULES, latency_budget_ms=budget, window_over=over)


def test_too_little_traffic_is_not_judged() -> None:
    assert verdict(figures(19, errors=19, p95=100.0), figures(100, p95=1.0)) is None
    assert verdict(figures(0)) is None


def test_errors_fail_as_soon_as_there_is_enough_traffic() -> None:
    reason = verdict(figures(20, errors=2), over=False)
    assert reason is not None and "error rate 10.0% over 20 requests" in reason
    assert verdict(figures(20, errors=1), over=False) is None  # 5% is the limit, not over it


def test_latency_is_judged_when_the_window_is_over() -> None:
    slow, baseline = figures(100, p95=3.0), figures(100, p95=1.0)
    assert verdict(slow, baseline, over=False) is None
    reason = verdict(slow, baseline)
    assert reason is not None and "3.0x the previous version's 1.00 ms" in reason
    assert verdict(figures(100, p95=1.4), baseline) is None  # within 1.5x


def test_the_budget_applies_without_a_previous_version() -> None:
    reason = verdict(figures(100, p95=12.0), None, budget=10.0)
    assert reason is not None and "over the budget of 10 ms" in reason
    assert verdict(figures(100, p95=9.0), None, budget=10.0) is None


def test_a_previous_version_with_little_traffic_sets_no_bar() -> None:
    thin = figures(MIN_BASELINE_REQUESTS - 1, p95=0.1)
    assert verdict(figures(100, p95=5.0), thin) is None
