"""The agent's Prometheus metrics (prometheus-client), in a registry of its own.

Every request metric carries ``model`` and ``version`` labels, ``version`` as its user wrote it
(``1.2.0``, the manifest's label, not the integer the device compares), so a dashboard can set
a new version's latency and error rate beside the previous one's during a rollout. Requests
carry ``code``, the real HTTP status (gRPC answers count under the HTTP status their code maps
to). Two durations: ``edge_agent_inference_seconds`` is the runtime call alone,
``edge_agent_request_seconds`` the whole request as the server sees it (body read, decode,
runtime, encode, send). The process collector gives RSS, CPU and open fds
(``process_*``), ``edge_agent_build_info`` the agent's and Python's versions. No ``_created``
series.

The hot path never looks labels up: :meth:`Metrics.series` hands out the labelled children of a
(model, version) once, cached.
"""

from __future__ import annotations

import bisect
import math
import platform
import threading

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agent.update.machine import State
from edge_sdk import __version__

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Milliseconds matter on a device: buckets from 0.1 ms to 5 s.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Request metrics: counted in plain Python by Series, exposed by _RequestCollector.
        self._series: dict[tuple[str, str], Series] = {}
        self._series_lock = threading.Lock()
        r.register(_RequestCollector(self._series))
        self.updates = Counter(
            "edge_agent_update_attempts",
            "Updates started, by model.",
            ["model"],
            registry=r,
        )
        self.results = Counter(
            "edge_agent_update_results",
            "Updates finished, by model and result (committed, failed, rolled_back, refused).",
            ["model", "result"],
            registry=r,
        )
        self.state = Gauge(
            "edge_agent_update_state",
            "1 for the update state each model is in, 0 for the others.",
            ["model", "state"],
            registry=r,
        )
        self.version = Gauge(
            "edge_agent_model_version",
            "The version serving, per model, as the integer devices compare.",
            ["model"],
            registry=r,
        )
        # What a person reads: 1 for the version each model serves, labelled as its user wrote
        # it (the manifest's label, 1.2.0); the series of a replaced version is removed.
        self.serving = Gauge(
            "edge_agent_model_serving_info",
            "1 for the version each model serves, labelled as its user wrote it.",
            ["model", "version"],
            registry=r,
        )
        self._serving: dict[str, str] = {}
        Gauge(
            "edge_agent_build_info",
            "The agent's build: always 1, the versions in the labels.",
            ["version", "python"],
            registry=r,
        ).labels(__version__, platform.python_version()).set(1)
        ProcessCollector(registry=r)

    def series(self, model: str, version: str) -> Series:
        """The labelled children of one (model, version), made once."""
        found = self._series.get((model, version))
        if found is None:
            with self._series_lock:
                found = self._series.setdefault((model, version), Series(model, version))
        return found

    def set_serving(self, model: str, number: int | None, label: str | None) -> None:
        """The version ``model`` serves now (``None``: nothing)."""
        self.version.labels(model).set(number or 0)
        before = self._serving.get(model)
        if before == label:
            return
        if before is not None:
            self.serving.remove(model, before)
            del self._serving[model]
        if label is not None:
            self.serving.labels(model, label).set(1)
            self._serving[model] = label

    def set_state(self, model: str, state: State) -> None:
        for s in State:
            self.state.labels(model, str(s)).set(1 if s is state else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class _Histogram:
    """Bucket counts (not cumulative) and a sum: one bisect and two adds per observation."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: over every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.total += value

    def family_sample(self) -> tuple[list[tuple[str, float]], float]:
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            buckets.append((floatToGoString(bound), float(running)))  # type: ignore[no-untyped-call]
        return buckets, self.total


class Series:
    """A (model, version)'s request metrics: what a request costs in metrics is a few list
    and dict updates under one uncontended lock, no label lookup and no prometheus-client
    object on the hot path; :class:`_RequestCollector` turns them into families when scraped.
    Safe from any thread (the event loop, gRPC's workers)."""

    def __init__(self, model: str, version: str) -> None:
        self.labels = (model, version)
        self.lock = threading.Lock()
        self.codes: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.latency_h = _Histogram(LATENCY_BUCKETS)
        self.duration_h = _Histogram(LATENCY_BUCKETS)
        self.batch_h = _Histogram(BATCH_BUCKETS)
        self.latency = _Observer(self, self.latency_h)
        self.duration = _Observer(self, self.duration_h)
        self.batch = _Observer(self, self.batch_h)

    def answered(self, code: int, seconds: float) -> None:
        """One request answered with ``code`` after ``seconds`` (the whole request)."""
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            self.duration_h.observe(seconds)

    def error(self, kind: str) -> None:
        """A failed request: ``input`` (the client's, 4xx) or ``inference`` (the runtime's)."""
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1


class _Observer:
    __slots__ = ("_histogram", "_series")

    def __init__(self, series: Series, histogram: _Histogram) -> None:
        self._series, self._histogram = series, histogram

    def observe(self, value: float) -> None:
        with self._series.lock:
            self._histogram.observe(value)


class _RequestCollector(Collector):
    def __init__(self, series: dict[tuple[str, str], Series]) -> None:
        self._series = series

    def describe(self) -> list[Metric]:
        return self._families([])

    def collect(self) -> list[Metric]:
        return self._families(list(self._series.values()))

    @staticmethod
    def _families(all_series: list[Series]) -> list[Metric]:
        requests = CounterMetricFamily(
            "edge_agent_requests",
            "Inference requests answered, by model, version and HTTP status code.",
            labels=["model", "version", "code"],
        )
        errors = CounterMetricFamily(
            "edge_agent_request_errors",
            "Inference requests that failed: bad input (4xx) or inference (5xx).",
            labels=["model", "version", "kind"],
        )
        histograms = [
            HistogramMetricFamily(
                "edge_agent_inference_seconds",
                "Time in the runtime per inference request.",
                labels=["model", "version"],
            ),
            HistogramMetricFamily(
                "edge_agent_request_seconds",
                "Whole inference requests as the server sees them: read, decode, run, encode, "
                "send.",
                labels=["model", "version"],
            ),
            HistogramMetricFamily(
                "edge_agent_batch_size",
                "Samples per runtime call (dynamic batching merges requests).",
                labels=["model", "version"],
            ),
        ]
        for series in all_series:
            with series.lock:
                codes, kinds = dict(series.codes), dict(series.errors)
                figures = [
                    h.family_sample() for h in (series.latency_h, series.duration_h, series.batch_h)
                ]
            for code, count in sorted(codes.items()):
                requests.add_metric([*series.labels, str(code)], count)
            for kind, count in sorted(kinds.items()):
                errors.add_metric([*series.labels, kind], count)
            for family, (buckets, total) in zip(histograms, figures, strict=True):
                family.add_metric(list(series.labels), buckets, total)
        return [requests, errors, *histograms]
