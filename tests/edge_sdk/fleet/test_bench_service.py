"""``fleet bench`` and ``build --measure-on``'s one call (edge_sdk.fleet.bench_service): what it
hands the job runner; the jobs on real devices are test_fleet_bench.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_sdk.core.wire.topics import Topics
from edge_sdk.fleet import bench_service
from edge_sdk.fleet.bench_service import DeviceBench
from edge_sdk.fleet.session import BrokerAddress


def test_measure_sends_one_job_with_the_benchs_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[Any, ...]] = []

    def run_job(address: Any, topics: Any, signers: Any, spec: Any, **kw: Any) -> str:
        sent.append((address, topics, signers, spec, kw))
        return "answer"

    monkeypatch.setattr(bench_service, "run_job", run_job)
    address = BrokerAddress.parse("mqtt://127.0.0.1:1")
    topics = Topics("edge", "default")
    bench = DeviceBench(address, topics, ["signer"], tmp_path, deadline_s=30.0)
    lines: list[str] = []
    assert bench.measure("spec", client_id="edge-sdk-bench-1", progress=lines.append) == "answer"  # type: ignore[arg-type]
    ((address_, topics_, signers, spec, kw),) = sent
    assert (address_, topics_, signers, spec) == (address, topics, ["signer"], "spec")
    assert kw["deadline_s"] == 30.0 and kw["client_id"] == "edge-sdk-bench-1"
    assert kw["serial"] > 0 and kw["keep_chunks"]("ab" * 32) is False  # nothing published here
    kw["progress"]("x")
    assert lines == ["x"]
