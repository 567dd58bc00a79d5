"""The version of each model that answers requests, swapped in one assignment under a lock:
a request runs entirely on the version it started with, and the next one sees the new."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping

import numpy as np

from agent.update.selftest import LoadedVersion
from edge_sdk.core.wire.protocol import Figures

LATENCY_WINDOW = 2048  # recent requests kept for p50/p95


# A version's figures are what the status reports (``inference``, ``probation``): the wire
# contract's type.
InferenceFigures = Figures


class ServingSlot:
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loaded: LoadedVersion | None = None
        self._count = 0
        self._errors = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    @property
    def loaded(self) -> LoadedVersion | None:
        return self._loaded

    @property
    def version(self) -> int | None:
        loaded = self._loaded
        return None if loaded is None else loaded.version

    def swap(self, loaded: LoadedVersion | None) -> LoadedVersion | None:
        """Make ``loaded`` the serving version; returns the one it replaced. Figures restart
        so the new version is judged on its own requests."""
        with self._lock:
            previous, self._loaded = self._loaded, loaded
            self._count = self._errors = 0
            self._latencies.clear()
        return previous

    def predict(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = self._loaded  # one read: the whole request uses this version
        if loaded is None:
            raise LookupError(f"model {self.name} has no version installed")
        return self.predict_on(loaded, feeds)[1]

    def predict_on(
        self, loaded: LoadedVersion, feeds: Mapping[str, np.ndarray], requests: int = 1
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Run ``feeds`` on ``loaded`` (the version the request started with, even if a swap
        has happened since) and count it in this version's figures if it is still serving.
        ``requests`` is how many requests a merged batch answers: each is counted, with the
        batch's time as its latency."""
        start = time.perf_counter()
        try:
            names = [o.name for o in loaded.bundle.manifest.outputs]
            result = dict(zip(names, loaded.model.run(feeds), strict=True))
        except Exception:
            with self._lock:
                if loaded is self._loaded:
                    self._count += requests
                    self._errors += requests
            raise
        elapsed = (time.perf_counter() - start) * 1e3
        with self._lock:
            if loaded is self._loaded:
                self._count += requests
                self._latencies.extend([elapsed] * requests)
        return loaded.version, result

    def figures(self) -> InferenceFigures:
        with self._lock:
            count, errors, latencies = self._count, self._errors, list(self._latencies)
        p50, p95 = (
            (float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)))
            if latencies
            else (0.0, 0.0)
        )
        return InferenceFigures(count, errors, errors / count if count else 0.0, p50, p95)
