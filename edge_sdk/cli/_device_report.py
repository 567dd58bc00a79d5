"""The build report's lines for ``--measure-on``: per candidate, this host's figures and the
device's side by side, and what the choice was made on (pure text; edge_sdk.cli._report prints
it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _ms(figures: Mapping[str, Any] | None, key: str) -> str:
    value = (figures or {}).get(key)
    return "-" if value is None else f"{value:.3f}"


def device_lines(report: Mapping[str, Any]) -> list[str]:
    device = report.get("device")
    if not device:
        return []
    name = device["device"]
    lines = [
        f"measured on device {name} ({_runtime(device.get('runtime') or {})}); "
        "p50 ms here | p50 p95 p99 ms there, load, peak RSS:"
    ]
    width = max(len(c["name"]) for c in report["candidates"])
    for c in report["candidates"]:
        measured = c.get("device")
        if not measured:
            continue
        mark = "*" if c["chosen"] else " "
        host, dev = c.get("host_latency_ms"), measured.get("latency_ms")
        load, peak = measured.get("load_ms") or 0, measured.get("peak_rss_mb") or 0
        there = (
            f"failed: {measured['error']}"
            if measured.get("error")
            else f"{_ms(dev, 'p50')} {_ms(dev, 'p95')} {_ms(dev, 'p99')}  {load:.0f} ms  "
            f"{peak:.0f} MB"
        )
        lines.append(f"{mark} {c['name']:<{width}}  {_ms(host, 'p50')} | {there}")
    lines.append(f"chosen on: {report.get('chosen_on', 'host timings')}'s figures")
    return lines


def _runtime(runtime: Mapping[str, Any]) -> str:
    parts = [f"onnxruntime {runtime['onnxruntime']}"] if "onnxruntime" in runtime else []
    if "threads" in runtime:
        parts.append(f"{runtime['threads']} threads")
    if "priority" in runtime:
        parts.append(str(runtime["priority"]))
    return ", ".join(parts) or "its runtime"


def where_timed(report: Mapping[str, Any]) -> str:
    """Where the footer's speed-up was measured."""
    chosen_on = str(report.get("chosen_on", ""))
    return f"on {chosen_on}" if chosen_on.startswith("device ") else "on this host"
