"""Latency measurement that survives a shared, noisy machine.

Models are timed in interleaved rounds (A, B, C, A, B, C, ...) so that a burst of load from a
neighbour hits every model alike; each model's figure is taken from all its rounds together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

RunOnce = Callable[[], object]


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    runs: int

    @property
    def throughput_per_s(self) -> float:
        return 1000.0 / self.mean_ms if self.mean_ms > 0 else 0.0

    def to_json(self) -> dict[str, float]:
        return {
            "p50": round(self.p50_ms, 4),
            "p95": round(self.p95_ms, 4),
            "p99": round(self.p99_ms, 4),
            "mean": round(self.mean_ms, 4),
            "runs": self.runs,
            "throughput_per_s": round(self.throughput_per_s, 1),
        }


def stats(samples_ns: list[int]) -> LatencyStats:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return LatencyStats(float(p50), float(p95), float(p99), float(ms.mean()), len(ms))


def _time_for(run: RunOnce, seconds: float, max_runs: int) -> list[int]:
    samples: list[int] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < max_runs and (not samples or time.perf_counter() < deadline):
        start = time.perf_counter_ns()
        run()
        samples.append(time.perf_counter_ns() - start)
    return samples


def measure_interleaved(
    runs: Mapping[str, RunOnce],
    *,
    seconds: float = 1.0,
    rounds: int = 5,
    warmup: int = 10,
    max_runs: int = 20_000,
) -> dict[str, LatencyStats]:
    """Time each callable for about ``seconds`` in total, split over ``rounds`` interleaved
    slices. Returns per-callable statistics."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[int]] = {name: [] for name in runs}
    per_slice = seconds / rounds
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].extend(_time_for(run, per_slice, max_runs // rounds))
    return {name: stats(values) for name, values in samples.items()}
