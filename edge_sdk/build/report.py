"""The build report: what a build measured and why it chose what it chose, as a JSON document.

The CLI prints it (``edge_sdk.cli._report``) or writes it with ``--json``; the bundle's manifest
carries it, so ``edge-sdk bundle inspect`` shows it later. It records the chosen candidate and
every other one tried, the source model's figures beside them, the data used, and where the
timings come from: this host (standing in for the target or not) or a device of the fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edge_sdk.build.data import Dataset
from edge_sdk.build.search import Candidate
from edge_sdk.core.host import StandIn, selecting, stand_in_line
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.runtime.ort import host_threads
from edge_sdk.runtime.timing import LatencyStats

if TYPE_CHECKING:
    from edge_sdk.build.candidates import Workshop
    from edge_sdk.build.pipeline import BuildRequest
    from edge_sdk.core.wire.bench_job import BenchAnswer


def build_report(
    request: BuildRequest,
    source_bytes: int,
    specs: Sequence[TensorSpec],
    calib: Dataset,
    valid: Dataset,
    notes: Sequence[str],
    candidates: Sequence[Candidate],
    chosen: Candidate,
    source_latency: LatencyStats,
    source_accuracy: float | None,
    output_names: Sequence[str] = (),
) -> dict[str, Any]:
    profile = request.profile
    assert chosen.latency is not None and chosen.fidelity is not None
    return {
        "profile": profile.id,
        "runtime": chosen.runtime or profile.runtime,
        "precision": chosen.precision,
        "recipe": dict(chosen.recipe),
        "source": request.source_label or str(request.model),
        "source_bytes": source_bytes,
        "artifact_bytes": chosen.artifact_bytes,
        "latency_ms": chosen.latency.to_json(),
        "source_latency_ms": source_latency.to_json(),
        "speedup": round(source_latency.p50_ms / chosen.latency.p50_ms, 3),
        "fidelity": chosen.fidelity.to_json(),
        "accuracy": chosen.accuracy,
        "source_accuracy": source_accuracy,
        "accuracy_budget": {
            "max_top1_disagreement": profile.accuracy_budget.max_top1_disagreement,
            "min_cosine": profile.accuracy_budget.min_cosine,
            "max_accuracy_drop": profile.accuracy_budget.max_accuracy_drop,
        },
        "first_output": request.first_output,
        "selection": profile.selection,
        "host_threads": host_threads(profile.threads),
        "inputs": [s.to_json() for s in specs],
        # Named here so that each fidelity's per_output figures can be read by name.
        "outputs": list(output_names),
        "calibration": {
            "source": calib.source,
            "samples": len(calib),
            "synthetic": calib.synthetic,
        },
        "validation": {
            "source": valid.source,
            "samples": len(valid),
            "synthetic": valid.synthetic,
            "labels": valid.labels is not None,
        },
        "notes": list(notes),
        "candidates": [c.to_json() | {"notes": list(c.notes)} for c in candidates],
    }


def record_where_timed(
    report: dict[str, Any],
    shop: Workshop,
    verdict: StandIn,
    timings: Mapping[str, LatencyStats],
    answer: BenchAnswer | None,
) -> None:
    """Add to ``report`` what the timings were taken on and what the choice was made on: this
    host (and whether it stands in for the target), or the device that measured the candidates;
    and how int8 arithmetic was judged."""
    profile = shop.profile
    report["routes"] = list(shop.routes)
    report["host"] = shop.host.to_json()
    report["timed_on_stand_in"] = verdict.ok
    report["selection"] = selecting(profile, verdict).selection
    report["stand_in_line"] = None if verdict.ok else stand_in_line(profile.id, verdict)
    report["chosen_on"] = "host timings" if report["selection"] == "fastest" else "profile order"
    if answer is not None:
        from edge_sdk.build.device_measure import results_json, side_by_side

        side_by_side(report["candidates"], timings, answer)
        report["device"] = results_json(answer)  # the manifest records what the device measured
        report["host_source_latency_ms"] = timings["source"].to_json()
        report["chosen_on"] = f"device {answer.device}"
        report["selection"] = "fastest"
    report["int8_arithmetic"] = {
        "target": profile.int8_kernels,
        "host": shop.host_kernels,
        "judged_by": shop.judge,
    }
