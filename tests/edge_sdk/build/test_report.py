"""The build report document (edge_sdk.build.report): the chosen candidate's figures beside the
source model's, the data used, and what the timings and the choice were made on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sdk.build.candidates import Workshop
from edge_sdk.build.data import synthetic
from edge_sdk.build.pipeline import BuildRequest
from edge_sdk.build.report import build_report, record_where_timed
from edge_sdk.build.search import Candidate
from edge_sdk.core.fidelity import Fidelity
from edge_sdk.core.host import HostDescription, verdict_for
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.runtime.timing import LatencyStats

SPECS = (TensorSpec("x", (1, 4), "float32", "NC"),)
OUTPUTS = (TensorSpec("y", (1, 2), "float32", "NC"),)


def _latency(p50_ms: float) -> LatencyStats:
    return LatencyStats(p50_ms, p50_ms, p50_ms, p50_ms, 100)


def test_the_report_sets_the_chosen_candidate_beside_the_source(tmp_path: Path) -> None:
    request = BuildRequest(
        model=tmp_path / "model.onnx",
        profile=resolve_profile("x86-64"),
        out=tmp_path,
        source_label="model.pkl",
    )
    calib, valid = synthetic(SPECS, 16, seed=0), synthetic(SPECS, 8, seed=1)
    chosen = Candidate(
        "fp32",
        "fp32",
        {},
        artifact_bytes=900,
        fidelity=Fidelity(None, 1.0, 0.0),
        latency=_latency(2.0),
        chosen=True,
        notes=("a note",),
    )
    failed = Candidate("fp16", "fp16", {}, error="could not convert")
    report = build_report(
        request,
        1000,
        SPECS,
        calib,
        valid,
        ["no data"],
        [chosen, failed],
        chosen,
        _latency(4.0),
        None,
    )
    assert report["source"] == "model.pkl" and report["source_bytes"] == 1000
    assert report["speedup"] == 2.0 and report["precision"] == "fp32"
    assert report["calibration"] == {"source": calib.source, "samples": 16, "synthetic": True}
    assert report["validation"]["samples"] == 8 and report["validation"]["labels"] is False
    assert [c["name"] for c in report["candidates"]] == ["fp32", "fp16"]
    assert report["candidates"][0]["notes"] == ["a note"] and report["notes"] == ["no data"]


def test_timed_on_a_host_that_cannot_stand_in_for_the_target(tmp_path: Path) -> None:
    arm = HostDescription("aarch64", "", (), ("CPUExecutionProvider",), 4)
    profile = resolve_profile("x86-64")
    request = BuildRequest(model=tmp_path / "model.onnx", profile=profile, out=tmp_path, host=arm)
    data = synthetic(SPECS, 4)
    shop = Workshop(request, tmp_path, (SPECS, OUTPUTS), data, data, lambda _: None)
    verdict = verdict_for(profile, shop.host)
    report: dict[str, Any] = {"candidates": []}
    record_where_timed(report, shop, verdict, {"source": _latency(1.0)}, None)
    assert report["timed_on_stand_in"] is False and "device" not in report
    assert report["selection"] == "preference" and report["chosen_on"] == "profile order"
    assert "this host is aarch64, the target x86_64" in report["stand_in_line"]
    assert report["host"]["machine"] == "aarch64" and report["routes"] == []
    assert report["int8_arithmetic"] == {
        "target": profile.int8_kernels,
        "host": "arm-dot",
        "judged_by": shop.judge,
    }
