"""The request metrics' own counting (plain Python per (model, version), exposed by a
collector): Prometheus semantics (``le`` inclusive, cumulative buckets, ``+Inf``, sum),
exact counts from many threads at once, and the families present before any request."""

from __future__ import annotations

import threading

from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import LATENCY_BUCKETS, Metrics


def families(metrics: Metrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = metrics.exposition().decode()
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    metrics = Metrics()
    series = metrics.series("m", "1.2.0")
    for value in (0.0001, 0.0001, 0.0002, 0.001, 10.0):
        series.latency.observe(value)
    samples = families(metrics)["edge_agent_inference_seconds"]
    buckets = {labels["le"]: value for name, labels, value in samples if name.endswith("_bucket")}
    assert buckets["0.0001"] == 2  # a value on a bound counts in it (le)
    assert buckets["0.00025"] == 3 and buckets["0.001"] == 4 and buckets["5.0"] == 4
    assert buckets["+Inf"] == 5 and len(buckets) == len(LATENCY_BUCKETS) + 1
    (total,) = [v for n, _, v in samples if n.endswith("_sum")]
    (count,) = [v for n, _, v in samples if n.endswith("_count")]
    assert abs(total - 10.0014) < 1e-9 and count == 5


def test_counts_are_exact_from_many_threads() -> None:
    metrics = Metrics()

    def hammer() -> None:
        series = metrics.series("m", "1")  # made once, whoever asks first
        for i in range(2000):
            series.answered(200 if i % 4 else 503, 0.001)
            series.batch.observe(1)
            if i % 4 == 0:
                series.error("inference")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = families(metrics)
    codes = {labels["code"]: v for _, labels, v in found["edge_agent_requests"]}
    assert codes == {"200": 12000, "503": 4000}
    (errors,) = found["edge_agent_request_errors"]
    assert errors[2] == 4000
    counts = [v for n, _, v in found["edge_agent_request_seconds"] if n.endswith("_count")]
    assert counts == [16000]


def test_every_family_is_described_before_any_request() -> None:
    found = families(Metrics())
    for name in (
        "edge_agent_requests",
        "edge_agent_request_errors",
        "edge_agent_inference_seconds",
        "edge_agent_request_seconds",
        "edge_agent_batch_size",
        "edge_agent_build_info",
        "process_resident_memory_bytes",
    ):
        assert name in found, name
