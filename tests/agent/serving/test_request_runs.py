"""Which runs stay on the event loop (agent.serving.request_runs): a model's cost per sample,
judged by its gate until it has run, then by its fastest run in this window or the last."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from agent.serving.request_runs import COST_WINDOW, RunCosts
from agent.update.selftest import LoadedVersion

ONE = {"input": np.zeros((1, 64), np.float32)}
EIGHT = {"input": np.zeros((8, 64), np.float32)}


def version(p95_ms: float) -> LoadedVersion:
    """A serving version as far as its cost goes: its gate's p95 per sample."""
    return SimpleNamespace(gate=SimpleNamespace(latency_p95_ms=p95_ms))  # type: ignore[return-value]


def test_a_version_that_has_not_run_is_judged_by_its_gate_per_sample() -> None:
    costs = RunCosts(inline_ms=1.0)
    loaded = version(0.2)
    assert costs.cheap("m", loaded, ONE)
    assert not costs.cheap("m", loaded, EIGHT)  # 8 samples at 0.2 ms: over the 1 ms budget


def test_a_model_that_got_slower_is_seen_within_two_windows() -> None:
    costs = RunCosts(inline_ms=1.0)
    loaded = version(0.0)
    costs.learn("m", loaded, 0.1)
    for _ in range(2 * COST_WINDOW - 1):
        costs.learn("m", loaded, 5.0)
        assert costs.cheap("m", loaded, ONE)  # the 0.1 ms run is in this window or the last
    costs.learn("m", loaded, 5.0)
    assert not costs.cheap("m", loaded, ONE)


def test_a_new_version_is_judged_by_its_own_gate() -> None:
    costs = RunCosts(inline_ms=1.0)
    old, new = version(0.0), version(5.0)
    costs.learn("m", old, 0.1)
    assert costs.cheap("m", old, ONE)
    assert not costs.cheap("m", new, ONE)
