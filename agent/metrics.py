"""The agent's Prometheus metrics (prometheus-client), in a registry of its own.

Every request metric carries ``model`` and ``version`` labels, so a dashboard can set a new
version's latency and error rate beside the previous one's during a rollout.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agent.machine import State

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
            "Predict requests answered, by model, version and HTTP status class.",
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

    def set_state(self, model: str, state: State) -> None:
        for s in State:
            self.state.labels(model, str(s)).set(1 if s is state else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
