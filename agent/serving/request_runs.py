"""Where a request's model run happens, for HTTP and gRPC alike: in its model's batch when
batching is on, on the event loop when the run is cheap, in the thread pool otherwise.

Handing a run to a thread pool and back costs ~50-100 us, more than a model that answers in
well under a millisecond takes, so such a model runs small requests on the event loop. What a
model costs is judged by the serving version's fastest recent run per sample (a busy machine
only ever adds to a run's time, so the fastest is what the model costs), and by its gate's p95
before it has run here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from agent.metrics import Metrics, Series
from agent.serving import codec, oip
from agent.serving.batching import Batcher, Batchers
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion

# A model whose gate measured a p95 under this (per sample) runs small requests on the event
# loop: a thread-pool hand-off costs ~50-100 us, more than such a model's run.
INLINE_RUN_MS = 0.25
COST_WINDOW = 256  # runs per window of the fastest-run estimate


class RunCosts:
    """What each model's serving version costs per sample, learnt from its runs."""

    def __init__(self, inline_ms: float = INLINE_RUN_MS) -> None:
        self._inline_ms = inline_ms
        # Per model: [id of the serving version, its fastest run per sample (ms) in this
        # window of runs, runs in the window, the fastest in the window before], which decides
        # whether a request runs on the event loop. Only the id: an old version is never kept
        # alive here.
        self._costs: dict[str, list[float]] = {}

    def cheap(self, name: str, loaded: LoadedVersion, arrays: Mapping[str, Any]) -> bool:
        """Whether this request's run should take under ``inline_ms``: by the serving
        version's fastest recent run per sample, its gate's p95 before it has run."""
        known = self._costs.get(name)
        cost = min(known[1], known[3]) if known and known[0] == id(loaded) else None
        if cost is None:
            cost = loaded.gate.latency_p95_ms
        return cost * codec.samples(arrays) <= self._inline_ms

    def learn(self, name: str, loaded: LoadedVersion, ms_per_sample: float) -> None:
        known = self._costs.get(name)
        if not known or known[0] != id(loaded):
            self._costs[name] = [id(loaded), ms_per_sample, 1, ms_per_sample]
        elif known[2] >= COST_WINDOW:  # a new window: a model that got slower is seen so
            self._costs[name] = [id(loaded), ms_per_sample, 1, known[1]]
        else:
            known[1] = min(known[1], ms_per_sample)
            known[2] += 1


def timed_run(
    slot: ServingSlot, loaded: LoadedVersion, arrays: Mapping[str, np.ndarray]
) -> tuple[int, dict[str, np.ndarray], float]:
    """The run and its own time, measured where it runs (a hand-off's wait is not the
    model's cost)."""
    start = time.perf_counter()
    answered, outputs = slot.predict_on(loaded, arrays)
    return answered, outputs, time.perf_counter() - start


class RequestRuns:
    """Where one API's requests run: its thread pool, its models' batchers and what each
    model's serving version costs (each front end owns one)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        threads: int,
        thread_name_prefix: str,
        batching: Mapping[str, tuple[float, int]] | None = None,
        inline_ms: float = INLINE_RUN_MS,
    ) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=thread_name_prefix)
        self._costs = RunCosts(inline_ms)
        # Per model (window_ms, max_batch); the Batcher itself is made on the event loop.
        self._batchers = Batchers(
            {k: v for k, v in (batching or {}).items() if v[0] > 0},
            self._executor,
            lambda name, v, n: metrics.series(name, oip.version_label(v)).batch.observe(n),
        )

    def batcher(self, name: str, slot: ServingSlot, loaded: LoadedVersion) -> Batcher | None:
        """The model's batcher, if batching is on for it (see :class:`Batchers`)."""
        return self._batchers.get(name, slot, loaded)

    async def run(
        self,
        name: str,
        slot: ServingSlot,
        loaded: LoadedVersion,
        arrays: dict[str, np.ndarray],
        series: Series,
        batcher: Batcher | None,
        *,
        inline: bool = True,
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Run a checked request where it costs least (``inline``: the request is small
        enough to stay on the loop at all) and record the run: its time and, unbatched, its
        size and cost. Returns the version that answered and the outputs; a runtime failure
        propagates."""
        if batcher is not None:
            run_start = time.perf_counter()
            answered, outputs = await batcher.predict(loaded, arrays)
            ran = time.perf_counter() - run_start
        elif inline and self._costs.cheap(name, loaded, arrays):
            # A model that answers in well under a millisecond runs here: handing it to a
            # thread and back costs more than the run.
            answered, outputs, ran = timed_run(slot, loaded, arrays)
        else:
            loop = asyncio.get_running_loop()
            answered, outputs, ran = await loop.run_in_executor(
                self._executor, timed_run, slot, loaded, arrays
            )
        series.latency.observe(ran)
        if batcher is None:  # a batch's size is observed where the batch runs
            samples = codec.samples(arrays)
            series.batch.observe(samples)
            self._costs.learn(name, loaded, ran * 1e3 / samples)
        return answered, outputs

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
