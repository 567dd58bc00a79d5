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

import platform
import threading

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from agent.machine import State
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
        self.requests = Counter(
            "edge_agent_requests",
            "Inference requests answered, by model, version and HTTP status code.",
            ["model", "version", "code"],
            registry=r,
        )
        self.errors = Counter(
            "edge_agent_request_errors",
            "Predict requests that failed: bad input (4xx) or inference (5xx).",
            ["model", "version", "kind"],
            registry=r,
        )
        self.latency = Histogram(
            "edge_agent_inference_seconds",
            "Time in the runtime per predict request.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "edge_agent_batch_size",
            "Samples per runtime call (dynamic batching merges requests).",
            ["model", "version"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
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
            "edge_agent_model_version", "The version serving, per model.", ["model"], registry=r
        )
        self.duration = Histogram(
            "edge_agent_request_seconds",
            "Whole inference requests as the server sees them: read, decode, run, encode, send.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        Gauge(
            "edge_agent_build_info",
            "The agent's build: always 1, the versions in the labels.",
            ["version", "python"],
            registry=r,
        ).labels(__version__, platform.python_version()).set(1)
        ProcessCollector(registry=r)
        self._series: dict[tuple[str, str], Series] = {}
        self._series_lock = threading.Lock()

    def series(self, model: str, version: str) -> Series:
        """The labelled children of one (model, version), made once."""
        found = self._series.get((model, version))
        if found is None:
            with self._series_lock:
                found = self._series.setdefault((model, version), Series(self, model, version))
        return found

    def set_state(self, model: str, state: State) -> None:
        for s in State:
            self.state.labels(model, str(s)).set(1 if s is state else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Series:
    """A (model, version)'s request metrics with their labels resolved: what a request costs
    in metrics is a few increments, no label lookup."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._metrics, self._model, self._version = metrics, model, version
        self.latency = metrics.latency.labels(model, version)
        self.duration = metrics.duration.labels(model, version)
        self.batch = metrics.batch.labels(model, version)
        self._codes: dict[int, Counter] = {}
        self._errors: dict[str, Counter] = {}

    def answered(self, code: int, seconds: float) -> None:
        """One request answered with ``code`` after ``seconds``."""
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes.setdefault(
                code, self._metrics.requests.labels(self._model, self._version, str(code))
            )
        counter.inc()
        self.duration.observe(seconds)

    def error(self, kind: str) -> None:
        """A failed request: ``input`` (the client's, 4xx) or ``inference`` (the runtime's)."""
        counter = self._errors.get(kind)
        if counter is None:
            counter = self._errors.setdefault(
                kind, self._metrics.errors.labels(self._model, self._version, kind)
            )
        counter.inc()
