"""Dynamic batching: requests for one model that arrive within a short window run as one
runtime call, for models whose first dimension is the batch.

A batch closes when ``window_ms`` has passed since its first request or it holds ``max_batch``
samples; requests for different versions (a swap in between) or with different sample shapes
never share a batch. Each request gets its own slice of the outputs back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion

Outputs = dict[str, np.ndarray]


@dataclass
class _Pending:
    loaded: LoadedVersion
    feeds: dict[str, np.ndarray]
    future: asyncio.Future[tuple[int, Outputs]] = field(repr=False)

    @property
    def samples(self) -> int:
        return int(next(iter(self.feeds.values())).shape[0])

    def key(self) -> tuple[int, tuple[tuple[str, tuple[int, ...]], ...]]:
        return id(self.loaded), tuple((k, v.shape[1:]) for k, v in sorted(self.feeds.items()))


class Batcher:
    def __init__(
        self,
        slot: ServingSlot,
        executor: Executor,
        *,
        window_ms: float,
        max_batch: int,
        observe: Callable[[LoadedVersion, int], None] = lambda _loaded, _samples: None,
    ) -> None:
        self._slot = slot
        self._executor = executor
        self._window = window_ms / 1000
        self._max = max_batch
        self._observe = observe
        self._queue: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Future[None]] = set()

    async def predict(
        self, loaded: LoadedVersion, feeds: dict[str, np.ndarray]
    ) -> tuple[int, Outputs]:
        loop = asyncio.get_running_loop()
        pending = _Pending(loaded, feeds, loop.create_future())
        self._queue.append(pending)
        if sum(p.samples for p in self._queue) >= self._max:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._flush)
        return await pending.future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, []
        groups: dict[object, list[_Pending]] = {}
        for pending in queue:
            groups.setdefault(pending.key(), []).append(pending)
        for group in groups.values():
            task = asyncio.ensure_future(self._run(group))
            self._running.add(task)  # keep a reference until it is done
            task.add_done_callback(self._running.discard)

    async def _run(self, group: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        loaded = group[0].loaded
        names = list(group[0].feeds)
        merged = {n: np.concatenate([p.feeds[n] for p in group]) for n in names}
        self._observe(loaded, int(next(iter(merged.values())).shape[0]))
        try:
            version, outputs = await loop.run_in_executor(
                self._executor, self._slot.predict_on, loaded, merged, len(group)
            )
        except Exception as e:  # each request learns its batch failed
            for p in group:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        start = 0
        for p in group:
            end = start + p.samples
            if not p.future.done():
                p.future.set_result((version, {k: v[start:end] for k, v in outputs.items()}))
            start = end


class Batchers:
    """One :class:`Batcher` per model that has batching on, made when first asked for; shared
    by the HTTP and gRPC front ends' shape of use (each owns one)."""

    def __init__(
        self,
        settings: dict[str, tuple[float, int]],
        executor: Executor,
        observe: Callable[[str, LoadedVersion, int], None],
    ) -> None:
        self._settings = settings
        self._executor = executor
        self._observe = observe
        self._made: dict[str, Batcher] = {}

    def get(self, name: str, slot: ServingSlot, loaded: LoadedVersion) -> Batcher | None:
        """The model's batcher, if batching is on for it and its first dimension is the batch
        (a fixed first dimension cannot take merged requests)."""
        settings = self._settings.get(name)
        if settings is None or not all(
            isinstance(t.shape[0], str) for t in loaded.bundle.manifest.inputs
        ):
            return None
        batcher = self._made.get(name)
        if batcher is None:
            window_ms, max_batch = settings
            batcher = Batcher(
                slot,
                self._executor,
                window_ms=window_ms,
                max_batch=max_batch,
                observe=lambda v, n: self._observe(name, v, n),
            )
            self._made[name] = batcher
        return batcher
