"""What SPEC section 4 promises users of `edge-sdk build --json`, as data the tests check."""

from __future__ import annotations

BUILD_REPORT_KEYS = frozenset(
    {
        "bundle", "profile", "runtime", "precision", "artifact_bytes", "source_bytes",
        "latency_ms", "source_latency_ms", "fidelity", "accuracy", "source_accuracy",
        "candidates",
    }
)  # fmt: skip
