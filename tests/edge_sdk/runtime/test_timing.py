"""Latency on a shared machine: models timed in interleaved rounds, so a burst of load hits
every model alike, and each model's figures come from all its rounds together."""

from __future__ import annotations

import pytest

from edge_sdk.runtime.timing import LatencyStats, measure_interleaved, stats


def test_percentiles_and_mean_are_in_milliseconds() -> None:
    figures = stats([n * 1_000_000 for n in range(1, 101)])  # 1 ms .. 100 ms
    assert figures.runs == 100 and figures.mean_ms == pytest.approx(50.5)
    assert (figures.p50_ms, figures.p95_ms, figures.p99_ms) == pytest.approx((50.5, 95.05, 99.01))


def test_the_json_figures_are_rounded_with_throughput() -> None:
    figures = LatencyStats(p50_ms=1.234567, p95_ms=2.0, p99_ms=3.0, mean_ms=0.8, runs=7)
    assert figures.to_json() == {
        "p50": 1.2346, "p95": 2.0, "p99": 3.0, "mean": 0.8, "runs": 7, "throughput_per_s": 1250.0,
    }  # fmt: skip
    assert LatencyStats(0.0, 0.0, 0.0, 0.0, 1).throughput_per_s == 0.0  # no division by zero


def test_models_are_timed_in_interleaved_rounds_after_a_warmup() -> None:
    calls: list[str] = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    # Two runs per model per round at most: the slices end on the run cap, not the clock.
    result = measure_interleaved(runs, seconds=60.0, rounds=3, warmup=2, max_runs=6)
    assert "".join(calls) == "aabb" + "aabb" * 3
    assert {name: figures.runs for name, figures in result.items()} == {"a": 6, "b": 6}


def test_a_slow_model_still_runs_once_per_round() -> None:
    # A model slower than its slice is timed once a round rather than not at all.
    calls: list[str] = []
    result = measure_interleaved(
        {"slow": lambda: calls.append("slow")}, seconds=0.0, rounds=4, warmup=0
    )
    assert calls == ["slow"] * 4 and result["slow"].runs == 4
