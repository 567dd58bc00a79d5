"""The Grafana dashboard only charts metrics the agent exports, under the names it exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import Metrics
from agent.update.machine import State

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "edge-agent.json"


def exported_series() -> set[str]:
    metrics = Metrics()
    # Touch every labelled metric once so it appears in the exposition.
    series = metrics.series("m", "1.2.0")
    series.answered(200, 0.002)
    series.error("input")
    series.latency.observe(0.001)
    series.batch.observe(1)
    metrics.updates.labels("m").inc()
    metrics.results.labels("m", "committed").inc()
    metrics.set_state("m", State.COMMITTED)
    metrics.set_serving("m", 1_002_000, "1.2.0")
    text = metrics.exposition().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\b((?:edge_agent|process)_[a-z_]+)", e)}
    assert used, "the dashboard queries nothing"
    assert used <= exported_series(), used - exported_series()
    # Every request panel can tell versions apart: that is what a rollout is judged on.
    assert all("version" in e for e in exprs if "requests_total" in e or "inference_seconds" in e)


def test_the_dashboard_charts_what_an_sre_expects() -> None:
    """Status codes, the whole request's latency beside the runtime's, the process (memory,
    CPU, file descriptors) and the build."""
    doc = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in doc["panels"] for t in p["targets"])
    for needed in (
        "by (model, version, code)",
        "edge_agent_request_seconds_bucket",
        "edge_agent_inference_seconds_bucket",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "edge_agent_build_info",
    ):
        assert needed in exprs, needed
    variables = {v["name"] for v in doc["templating"]["list"]}
    used = set(re.findall(r"\$([a-z_]+)", exprs)) - {"__rate_interval", "__range"}
    assert used <= variables, used - variables


def test_no_created_series_and_versions_as_their_user_wrote_them() -> None:
    metrics = Metrics()
    metrics.series("m", "1.2.0").answered(404, 0.001)
    text = metrics.exposition().decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert not [s.name for s in samples if s.name.endswith("_created")]
    (request,) = [s for s in samples if s.name == "edge_agent_requests_total"]
    assert request.labels == {"model": "m", "version": "1.2.0", "code": "404"}


def test_the_serving_version_reads_as_its_user_wrote_it() -> None:
    """The dashboard names the version each device serves by its label (``1.2.0``, not
    1002000); a replaced version's series goes, so only one version shows per model."""
    metrics = Metrics()
    metrics.set_serving("m", 1_002_000, "1.2.0")
    metrics.set_serving("m", 1_003_000, "1.3.0")
    text = metrics.exposition().decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    info = [s for s in samples if s.name == "edge_agent_model_serving_info"]
    assert [(s.labels, s.value) for s in info] == [({"model": "m", "version": "1.3.0"}, 1.0)]
    (number,) = [s for s in samples if s.name == "edge_agent_model_version"]
    assert number.value == 1_003_000  # the integer stays, for alerts that compare
    metrics.set_serving("m", None, None)
    text = metrics.exposition().decode()
    assert "edge_agent_model_serving_info{" not in text
    doc = json.loads(DASHBOARD.read_text())
    (panel,) = [p for p in doc["panels"] if p["title"] == "Version serving"]
    (target,) = panel["targets"]
    assert "edge_agent_model_serving_info" in target["expr"]
    assert "{{version}}" in target["legendFormat"] and panel["options"]["textMode"] == "name"
