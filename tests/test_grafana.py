"""The Grafana dashboard only charts metrics the agent exports, under the names it exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.machine import State
from agent.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "edge-agent.json"


def exported_series() -> set[str]:
    metrics = Metrics()
    # Touch every labelled metric once so it appears in the exposition.
    metrics.requests.labels("m", "1", "2xx").inc()
    metrics.errors.labels("m", "1", "input").inc()
    metrics.latency.labels("m", "1").observe(0.001)
    metrics.batch.labels("m", "1").observe(1)
    metrics.updates.labels("m").inc()
    metrics.results.labels("m", "committed").inc()
    metrics.set_state("m", State.COMMITTED)
    metrics.version.labels("m").set(1)
    text = metrics.exposition().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\b(edge_agent_[a-z_]+)", e)}
    assert used, "the dashboard queries nothing"
    assert used <= exported_series(), used - exported_series()
    # Every request panel can tell versions apart: that is what a rollout is judged on.
    assert all("version" in e for e in exprs if "requests_total" in e or "inference_seconds" in e)
