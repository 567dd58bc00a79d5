"""The gate every version passes before it may replace the running one: verify against the
trusted root, load the artifact in the real runtime, run its golden vectors within the bundle's
tolerance, and stay inside the profile's memory budget and the model's latency budget."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from agent.sysinfo import rss_bytes
from edge_sdk.core.bundle import Bundle, read_bundle
from edge_sdk.core.golden import GoldenCheck, check_bundle
from edge_sdk.core.trust import verify_bundle
from edge_sdk.core.trust.root_file import load_trust_root
from edge_sdk.runtime import Model, load_bundle, named_outputs


@dataclass(frozen=True)
class SelfTestResult:
    name: str
    version: int
    precision: str
    golden: GoldenCheck


def self_test(bundle_path: Path, trust_path: Path, threads: int = 1) -> SelfTestResult:
    root = load_trust_root(trust_path)
    bundle = read_bundle(bundle_path)
    # Trust first: nothing that fails verification is ever handed to the runtime.
    verify_bundle(root, bundle, str(bundle_path))
    m = bundle.manifest
    run = named_outputs(load_bundle(bundle, threads=threads), m.outputs)
    return SelfTestResult(m.name, m.version, m.precision, check_bundle(bundle, run))


@dataclass(frozen=True)
class GateResult:
    passed: bool
    detail: str
    latency_p95_ms: float
    memory_mb: float


@dataclass(frozen=True)
class LoadedVersion:
    """A version loaded, warmed and tested: ready to be switched in without a cold start."""

    bundle: Bundle
    model: Model
    gate: GateResult

    @property
    def version(self) -> int:
        return self.bundle.manifest.version


def golden_run(bundle: Bundle, model: Model) -> tuple[GoldenCheck, list[float]]:
    """Golden vectors through ``model``, with the time of each call in milliseconds."""
    m = bundle.manifest
    run = named_outputs(model, m.outputs)
    times: list[float] = []

    def timed(feeds: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        start = time.perf_counter()
        result = run(feeds)
        times.append((time.perf_counter() - start) * 1e3)
        return result

    return check_bundle(bundle, timed), times


def gate(
    bundle: Bundle,
    *,
    threads: int,
    memory_budget_mb: float,
    max_latency_ms: float,
    artifact_path: Path | None = None,
) -> LoadedVersion:
    """Load ``bundle`` (already verified) and test it. A model that cannot even load fails the
    gate with the runtime's reason rather than raising: to the agent it is one more bad
    version."""
    before = rss_bytes()
    try:
        model = load_bundle(bundle, threads=threads, artifact_path=artifact_path)
        check_result, times = golden_run(bundle, model)
        # Warm-up done by the first pass; the second is what the latency budget judges.
        if check_result.passed:
            check_result, times = golden_run(bundle, model)
    except Exception as e:
        detail = f"cannot run in this device's runtime: {type(e).__name__}: {e}"
        return LoadedVersion(
            bundle, _Unloadable(), GateResult(False, detail.splitlines()[0], 0.0, 0.0)
        )
    memory_mb = max(0, rss_bytes() - before) / 2**20
    p95 = float(np.percentile(times, 95)) if times else 0.0
    if not check_result.passed:
        result = GateResult(False, f"golden vectors failed: {check_result.detail}", p95, memory_mb)
    elif memory_mb > memory_budget_mb:
        result = GateResult(
            False,
            f"loading took {memory_mb:.0f} MB, over the profile's {memory_budget_mb:.0f} MB budget",
            p95,
            memory_mb,
        )
    elif max_latency_ms and p95 > max_latency_ms:
        result = GateResult(
            False,
            f"latency p95 {p95:.2f} ms is over the budget of {max_latency_ms:g} ms",
            p95,
            memory_mb,
        )
    else:
        result = GateResult(True, check_result.detail, p95, memory_mb)
    # The runtime holds its own copy of the weights now: keep the manifest and the golden
    # vectors (probation re-runs them), not a second copy of the artifact.
    return LoadedVersion(replace(bundle, artifact=b""), model, result)


class _Unloadable:
    """Stands in for a model the runtime refused, so a failed gate still has a value."""

    batch_capable = False

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("this version could not be loaded")
