"""What SPEC section 4 promises users of `edge-sdk build --json`, as data the tests check."""

from __future__ import annotations

from typing import Any

BUILD_REPORT_KEYS = frozenset(
    {
        "bundle", "profile", "runtime", "precision", "artifact_bytes", "source_bytes",
        "latency_ms", "source_latency_ms", "fidelity", "accuracy", "source_accuracy",
        "candidates",
    }
)  # fmt: skip


def int8_by_the_rule(report: dict[str, Any], precision: str) -> dict[str, Any]:
    """The ``precision`` candidate a CPU-profile build made, checked against the search's rule:
    chosen when it measured faster than the float model, otherwise rejected as slower.

    Which way it goes is the host's call: int8 kernels win on CPUs with VNNI (x86) or dot
    product (Arm) instructions and can lose without them (an AVX2-only host runs int8 slower
    than float). The tests hold the rule and the candidate's quality, not one CPU's verdict.
    """
    tried = [c for c in report["candidates"] if c["precision"] == precision and not c["error"]]
    assert tried, f"no {precision} candidate was built: {report['candidates']}"
    chosen = [c for c in tried if c["chosen"]]
    if chosen:
        assert report["precision"] == precision
        return chosen[0]
    for c in tried:
        assert c["reason"].startswith(("slower than the float model", "inside budget, but")), c
    assert report["precision"] != precision
    return min(tried, key=lambda c: c["latency_ms"]["p50"])
