"""The build report's ``--measure-on`` lines: per candidate, this host's p50 beside the device's
figures (or its error), the chosen one marked, and what the choice was made on."""

from __future__ import annotations

from typing import Any

from edge_sdk.cli._device_report import device_lines, where_timed


def _report(**changes: Any) -> dict[str, Any]:
    figures = {"p50": 1.0, "p95": 1.5, "p99": 2.25}
    return {
        "device": {"device": "cam-01", "runtime": {"onnxruntime": "1.24.1", "threads": 2}},
        "candidates": [
            {
                "name": "int8_static",
                "chosen": True,
                "host_latency_ms": {"p50": 0.5},
                "device": {"latency_ms": figures, "load_ms": 41.6, "peak_rss_mb": 88.2},
            },
            {"name": "fp32", "chosen": False, "host_latency_ms": None, "device": {"error": "OOM"}},
            {"name": "fp16", "chosen": False, "host_latency_ms": {"p50": 0.9}},  # not sent
        ],
        "chosen_on": "device cam-01",
        **changes,
    }


def test_each_measured_candidate_is_one_row_host_then_device() -> None:
    assert device_lines(_report()) == [
        "measured on device cam-01 (onnxruntime 1.24.1, 2 threads); "
        "p50 ms here | p50 p95 p99 ms there, load, peak RSS:",
        "* int8_static  0.500 | 1.000 1.500 2.250  42 ms  88 MB",
        "  fp32         - | failed: OOM",
        "chosen on: device cam-01's figures",
    ]


def test_a_build_not_measured_on_a_device_has_no_device_lines() -> None:
    assert device_lines(_report(device=None)) == []
    assert where_timed(_report(chosen_on="host timings")) == "on this host"
    assert where_timed({}) == "on this host"


def test_the_runtime_is_described_by_what_the_device_said() -> None:
    head = device_lines(_report(device={"device": "pi", "runtime": {"priority": "SCHED_IDLE"}}))
    assert head[0].startswith("measured on device pi (SCHED_IDLE); ")
    assert device_lines(_report(device={"device": "pi"}))[0].startswith(
        "measured on device pi (its runtime); "
    )
    assert where_timed(_report()) == "on device cam-01"
