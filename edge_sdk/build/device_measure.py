"""What a benchmark job measures, made from a bundle, a model or a build's candidates, and the
device's answer turned back into figures the build chooses by (edge_sdk.fleet.bench sends it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.build.search import Candidate
from edge_sdk.core import golden
from edge_sdk.core.profiles import HardwareProfile
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.wire.bench_job import BenchAnswer
from edge_sdk.fleet.bench import Artifact, DeviceBenchError, JobSpec
from edge_sdk.runtime.timing import LatencyStats

GOLDEN_SAMPLES = 8
SOURCE = "source"  # the float baseline's name in a build's job


def spec_from_bundle(path: Path, device: str, **timing: Any) -> JobSpec:
    """The bundle's artifact, opened as its manifest says, checked on its golden vectors."""
    from edge_sdk.core.bundle import read_bundle

    b = read_bundle(path)
    m = b.manifest
    artifact = Artifact(m.precision, m.precision, dict(m.runtime_settings), b.artifact)
    return JobSpec(
        device, m.profile, m.runtime, m.inputs, m.outputs, b.golden, (artifact,), **timing
    )


def spec_from_model(path: Path, device: str, profile_name: str, **timing: Any) -> JobSpec:
    """An .onnx model as the profile would run it in float, with golden outputs computed here
    on random inputs (batch 1 for every dynamic dimension)."""
    from edge_sdk.build.candidates import runtime_settings
    from edge_sdk.build.onnx_model import load_source
    from edge_sdk.core.profiles import resolve_profile
    from edge_sdk.runtime import OnnxModel, evaluate
    from edge_sdk.runtime.ort import open_session

    profile = resolve_profile(profile_name)
    _, source = load_source(path)
    rng = np.random.default_rng(0)
    feeds = {t.name: _random(t, rng) for t in source.inputs}
    outputs = evaluate(OnnxModel(open_session(path, threads=1)), feeds)
    data = golden.pack(feeds, {o.name: v for o, v in zip(source.outputs, outputs, strict=True)})
    artifact = Artifact("fp32", "fp32", runtime_settings(profile, "fp32"), path.read_bytes())
    return JobSpec(
        device, profile.id, "onnx", source.inputs, source.outputs, data, (artifact,), **timing
    )


def _random(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    shape = [GOLDEN_SAMPLES] + [d if isinstance(d, int) else 1 for d in spec.shape[1:]]
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 2, shape).astype(dtype)


def device_latency(answer: BenchAnswer, baseline: str = SOURCE) -> dict[str, LatencyStats]:
    """Each measured candidate's device latency, by name. A candidate timed interleaved with
    the job's baseline is scaled by the baseline's own run over its run beside the candidate:
    the candidates then compare as if timed under the same load, as the host's interleaved
    rounds compare them."""
    found = {}
    for r in answer.results:
        lat = r.latency_ms
        if r.error is None and lat is not None and lat.get("p50") is not None:
            found[r.name] = LatencyStats(
                float(lat["p50"]),
                float(lat.get("p95") or lat["p50"]),
                float(lat.get("p99") or lat["p50"]),
                float(lat.get("mean") or lat["p50"]),
                int(lat.get("runs") or 0),
            )
    base = found.get(baseline)
    for r in answer.results:
        beside = r.baseline_p50_ms
        if base is not None and r.name in found and r.name != baseline and beside and beside > 0:
            f = base.p50_ms / beside
            s = found[r.name]
            found[r.name] = LatencyStats(
                s.p50_ms * f, s.p95_ms * f, s.p99_ms * f, s.mean_ms * f, s.runs
            )
    return found


def by_device(
    candidates: Sequence[Candidate], answer: BenchAnswer
) -> tuple[list[Candidate], LatencyStats | None]:
    """The candidates with the device's latency in place of this host's (a candidate the device
    could not run is out, with its error), and the float model's device latency, which the
    device measured as the ``source`` candidate."""
    measured = device_latency(answer)
    errors = {r.name: r.error for r in answer.results if r.error}
    out = []
    for c in candidates:
        if c.name in measured:
            out.append(replace(c, latency=measured[c.name]))
        elif c.error is None and c.name in errors:
            out.append(replace(c, error=f"on the device: {errors[c.name]}"))
        else:
            out.append(c)
    return out, measured.get(SOURCE)


def results_json(answer: BenchAnswer) -> dict[str, Any]:
    """What the report and the bundle's manifest record of the device's measurements."""
    return {
        "device": answer.device,
        "job": answer.job,
        "runtime": dict(answer.runtime),
        "candidates": {r.name: r.to_json() for r in answer.results},
    }


def figures_rows(answer: BenchAnswer) -> list[Mapping[str, Any]]:
    return [r.to_json() for r in answer.results]


@dataclass(frozen=True)
class MeasureOn:
    """``build --measure-on DEVICE``: where to measure, and how the job is sent (run_job bound
    to the broker, the online keys and a deadline)."""

    device: str
    send: Callable[[JobSpec], BenchAnswer]
    seconds: float = 2.0


def measure_candidates(
    on: MeasureOn,
    profile: HardwareProfile,
    candidates: Sequence[Candidate],
    artifacts: Mapping[str, tuple[Path, Mapping[str, Any]]],
    source: Path,
    tensors: tuple[Sequence[TensorSpec], Sequence[TensorSpec]],
    golden_bytes: bytes,
    source_accuracy: float | None,
    progress: Callable[[str], None],
) -> BenchAnswer:
    """Send every candidate inside the budget (and, for ONNX targets, the source model as the
    float baseline) to the device; a DeviceBenchError carries the host's figures
    (``host_figures``), for the one line to come with them."""
    from edge_sdk.build.candidates import runtime_settings
    from edge_sdk.build.search import within_budget

    # A job runs one runtime, the profile's own: a second runtime's candidates are not sent, so
    # they rank after every measured one (chosen only when none of those fits).
    sent = [
        c
        for c in candidates
        if c.name in artifacts
        and c.runtime in ("", profile.runtime)
        and within_budget(c, source_accuracy, profile.accuracy_budget)
    ]
    parts = [
        Artifact(c.name, c.precision, dict(artifacts[c.name][1]), artifacts[c.name][0].read_bytes())
        for c in sent
    ]
    if profile.runtime == "onnx":
        parts.insert(
            0, Artifact(SOURCE, "fp32", runtime_settings(profile, "fp32"), source.read_bytes())
        )
    spec = JobSpec(
        on.device,
        profile.id,
        profile.runtime,
        tuple(tensors[0]),
        tuple(tensors[1]),
        golden_bytes,
        tuple(parts),
        seconds=on.seconds,
        baseline=SOURCE if profile.runtime == "onnx" else "",
    )
    progress(f"measuring {len(parts)} candidates on device {on.device}")
    try:
        return on.send(spec)
    except DeviceBenchError as e:
        e.host_figures = [
            f"host figures: {c.name} p50 {c.latency.p50_ms:.3f} ms, p95 {c.latency.p95_ms:.3f} ms"
            for c in candidates
            if c.latency is not None
        ]
        raise


def choose_on_device(
    on: MeasureOn,
    profile: HardwareProfile,
    candidates: Sequence[Candidate],
    send_args: tuple[
        Mapping[str, tuple[Path, Mapping[str, Any]]],
        Path,
        tuple[Sequence[TensorSpec], Sequence[TensorSpec]],
        bytes,
    ],
    source_accuracy: float | None,
    progress: Callable[[str], None],
) -> tuple[list[Candidate], LatencyStats | None, BenchAnswer]:
    """Measure on the device, then choose by its figures: the device is the target, so its
    speed is evidence whatever the profile's selection says for host timings."""
    from edge_sdk.build.search import choose

    artifacts, source, tensors, golden_bytes = send_args
    answer = measure_candidates(
        on, profile, candidates, artifacts, source, tensors, golden_bytes, source_accuracy, progress
    )
    on_device, source_latency = by_device(candidates, answer)
    on_device = judged_on_device(on_device, answer, profile.accuracy_budget.min_cosine)
    measured = device_latency(answer)
    # Not measured there (outside the budget, or not sent): no device speed to rank it by.
    ranked = [c if c.name in measured or c.error else replace(c, latency=None) for c in on_device]
    chosen = choose(ranked, replace(profile, selection="fastest"), source_latency, source_accuracy)
    return chosen, source_latency, answer


def judged_on_device(
    candidates: Sequence[Candidate], answer: BenchAnswer, min_cosine: float
) -> list[Candidate]:
    """A candidate whose outputs on the device's runtime fall below the budget's cosine on the
    golden vectors (beyond the noise of a small set) takes the device's cosine, so the choice
    rules it out; a note says where the figure came from."""
    from edge_sdk.build.search import COSINE_NOISE

    cosine = {
        r.name: r.fidelity["cosine"]
        for r in answer.results
        if r.fidelity is not None and r.fidelity.get("cosine") is not None
    }
    out = []
    for c in candidates:
        there = cosine.get(c.name)
        if c.fidelity is not None and there is not None and there < min_cosine - COSINE_NOISE:
            note = f"on device {answer.device}: cosine {there:.4f} on the golden vectors"
            c = replace(c, fidelity=replace(c.fidelity, cosine=there), notes=(*c.notes, note))
        out.append(c)
    return out


def side_by_side(
    report_candidates: Sequence[dict[str, Any]],
    host: Mapping[str, LatencyStats],
    answer: BenchAnswer,
) -> None:
    """Each candidate's report entry gets its host and its device figures."""
    device = {r.name: r for r in answer.results}
    for c in report_candidates:
        h, d = host.get(c["name"]), device.get(c["name"])
        c["host_latency_ms"] = h.to_json() if h else None
        c["device"] = d.to_json() if d else None
