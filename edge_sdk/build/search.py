"""Candidate selection: the pure decision core of the build (no I/O, no runtime).

A candidate is one recipe's artifact with its measured figures. The rules, in order:
1. a candidate that failed to build, broke the accuracy budget, or does not fit the profile's
   storage budget is out;
2. with ``selection = "fastest"`` (CPU targets, where this host's timings carry over), a
   candidate slower than the float model is out, and the fastest survivor wins;
3. with ``selection = "preference"`` (GPU/NPU targets, where host CPU timings say nothing about
   the target's engine), the survivor earliest in the profile's precision order wins.
Every candidate gets a one-line reason either way, for the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edge_sdk.core.fidelity import Fidelity
from edge_sdk.core.profiles import AccuracyBudget, HardwareProfile
from edge_sdk.errors import BudgetError
from edge_sdk.runtime.timing import LatencyStats

# Two timings within this fraction are a tie on a noisy shared host; the smaller artifact wins.
LATENCY_TIE = 0.05
MB = 1024 * 1024


@dataclass(frozen=True)
class Candidate:
    name: str
    precision: str
    recipe: Mapping[str, Any]
    artifact_bytes: int = 0
    fidelity: Fidelity | None = None
    accuracy: float | None = None
    latency: LatencyStats | None = None
    error: str | None = None
    chosen: bool = False
    reason: str = ""
    notes: tuple[str, ...] = field(default=())
    # int8 candidates are measured twice: an exact QDQ simulation (graph optimisation off, so
    # Q/DQ stay unfused) and this host's fused kernels; ``fidelity`` is the one ``judged_by``
    # names ("exact" or "host"), chosen by ``int8_judge``.
    exact_fidelity: Fidelity | None = None
    host_fidelity: Fidelity | None = None
    judged_by: str | None = None
    # Why the candidate was not built because its precision cannot help this model (int8 on a
    # graph with no op onnxruntime quantizes): not a failure, and never chosen.
    skipped: str | None = None
    # The runtime the artifact runs on: the profile's own, or its second runtime's
    # (``[second_runtime]``), whose candidates come after the profile's own in its order.
    runtime: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": self.precision,
            "recipe": dict(self.recipe),
            "artifact_bytes": self.artifact_bytes,
            "fidelity": self.fidelity.to_json() if self.fidelity else None,
            "accuracy": self.accuracy,
            "latency_ms": self.latency.to_json() if self.latency else None,
            "error": self.error,
            "chosen": self.chosen,
            "reason": self.reason,
            "judged_by": self.judged_by,
            "exact_fidelity": self.exact_fidelity.to_json() if self.exact_fidelity else None,
            "host_fidelity": self.host_fidelity.to_json() if self.host_fidelity else None,
            "skipped": self.skipped,
            "runtime": self.runtime,
        }


def int8_judge(target_kernels: str, host_kernels: str) -> str:
    """Whose arithmetic judges an int8 candidate's fidelity: this host's fused kernels only when
    the host computes int8 the way the target does; otherwise an exact QDQ simulation (what a
    VNNI, Arm dot-product or TensorRT target computes, none of which saturates)."""
    return "host" if target_kernels == host_kernels else "exact"


# Two fidelity figures closer than this are the same measurement on a finite validation set.
COSINE_NOISE = 0.002


def judged_differently(c: Candidate) -> bool:
    """Whether the exact and the host figures disagree enough to show both."""
    e, h = c.exact_fidelity, c.host_fidelity
    if e is None or h is None:
        return False
    return abs(e.cosine - h.cosine) > COSINE_NOISE / 2 or e.top1_agreement != h.top1_agreement


def budget_violation(
    fidelity: Fidelity,
    accuracy: float | None,
    source_accuracy: float | None,
    budget: AccuracyBudget,
) -> str | None:
    """Why a candidate's fidelity is outside the budget, or None when it is inside."""
    if fidelity.top1_agreement is not None:
        disagreement = 1.0 - fidelity.top1_agreement
        if disagreement > budget.max_top1_disagreement + 1e-12:
            return (
                f"top-1 disagreement {disagreement:.2%} > budget {budget.max_top1_disagreement:.2%}"
                " (the first output's top-1; --first-output values if it holds no class scores)"
            )
    if fidelity.cosine < budget.min_cosine:
        return f"cosine {fidelity.cosine:.4f} < budget {budget.min_cosine:.4f}"
    if accuracy is not None and source_accuracy is not None:
        drop = source_accuracy - accuracy
        if drop > budget.max_accuracy_drop + 1e-12:
            return f"accuracy drop {drop:.2%} > budget {budget.max_accuracy_drop:.2%}"
    return None


def within_budget(c: Candidate, source_accuracy: float | None, budget: AccuracyBudget) -> bool:
    return (
        c.error is None
        and c.fidelity is not None
        and budget_violation(c.fidelity, c.accuracy, source_accuracy, budget) is None
    )


def _ratio(baseline: LatencyStats | None, c: Candidate) -> float | None:
    if baseline is None or c.latency is None or c.latency.p50_ms <= 0:
        return None
    return baseline.p50_ms / c.latency.p50_ms


def choose(
    candidates: Sequence[Candidate],
    profile: HardwareProfile,
    source_latency: LatencyStats | None,
    source_accuracy: float | None,
) -> list[Candidate]:
    """Mark exactly one candidate chosen and give each a reason; raise BudgetError if none fits."""
    budget = profile.accuracy_budget
    reasons: dict[int, str] = {}
    survivors: list[int] = []
    for i, c in enumerate(candidates):
        speedup = _ratio(source_latency, c)
        if c.skipped is not None:
            reasons[i] = f"skipped: {c.skipped}"
        elif c.error is not None:
            reasons[i] = f"failed to build: {c.error}"
        elif c.fidelity is None:
            reasons[i] = "not measured"
        elif violation := budget_violation(c.fidelity, c.accuracy, source_accuracy, budget):
            reasons[i] = f"outside accuracy budget: {violation}"
        elif c.artifact_bytes > profile.budget.storage_mb * MB:
            reasons[i] = (
                f"artifact {c.artifact_bytes / MB:.1f} MB exceeds the profile's storage budget "
                f"of {profile.budget.storage_mb} MB"
            )
        elif (
            profile.selection == "fastest"
            and c.precision != "fp32"  # the float model itself is never "slower than float"
            and speedup is not None
            and speedup < 1.0 - LATENCY_TIE
        ):
            reasons[i] = f"slower than the float model ({speedup:.2f}x)"
        else:
            survivors.append(i)
    if not survivors:
        detail = "; ".join(f"{candidates[i].name}: {reasons[i]}" for i in range(len(candidates)))
        if all(c.error is not None or c.skipped is not None for c in candidates):
            raise BudgetError(f"no candidate for profile {profile.id} could be built ({detail})")
        raise BudgetError(
            f"no candidate for profile {profile.id} stays inside its accuracy budget ({detail}); "
            "pass real --calibration data, or a profile with a looser [accuracy_budget]"
        )
    if profile.selection == "fastest":
        best = min(survivors, key=lambda i: _latency_key(candidates[i]))
        best_p50 = _latency_key(candidates[best])[0]
        # Among near-ties, the smallest artifact: cheaper to ship and to keep in memory.
        tied = [
            i for i in survivors if _latency_key(candidates[i])[0] <= best_p50 * (1 + LATENCY_TIE)
        ]
        best = min(tied, key=lambda i: (candidates[i].artifact_bytes, _latency_key(candidates[i])))
        why_chosen = "fastest inside the accuracy budget"
    else:
        best = _most_faithful_first(survivors, candidates, profile)
        why_chosen = "first in the profile's precision order inside the accuracy budget"
    rank = preference(profile, candidates[best])
    for i in survivors:
        if i != best:
            reasons[i] = (
                f"inside budget, but {candidates[best].name} is faster or smaller"
                if profile.selection == "fastest"
                else f"inside budget, but {candidates[best].name} is more faithful"
                if preference(profile, candidates[i]) == rank
                else f"inside budget, but {candidates[best].name} comes first in the order"
            )
    speed = _ratio(source_latency, candidates[best])
    if speed is not None:
        why_chosen += f" ({speed:.2f}x the float model's speed on this host)"
    reasons[best] = why_chosen
    return [replace(c, chosen=(i == best), reason=reasons[i]) for i, c in enumerate(candidates)]


def _most_faithful_first(
    survivors: Sequence[int], candidates: Sequence[Candidate], profile: HardwareProfile
) -> int:
    """The survivor first in the profile's order; among several of that precision and runtime
    (the int8 search's variants), the most faithful, unless the first is within noise of it."""
    first = min(survivors, key=lambda i: (preference(profile, candidates[i]), i))
    rank = preference(profile, candidates[first])
    same = [i for i in survivors if preference(profile, candidates[i]) == rank]
    top = max(same, key=lambda i: (cosine_of(candidates[i]), -i))
    return (
        top
        if cosine_of(candidates[top]) - cosine_of(candidates[first]) > COSINE_NOISE / 2
        else first
    )


def cosine_of(c: Candidate) -> float:
    """A candidate's cosine, 0 where it has no figures (failed, skipped)."""
    return c.fidelity.cosine if c.fidelity else 0.0


def preference(profile: HardwareProfile, c: Candidate) -> int:
    """A candidate's place in the profile's order: its own runtime's precisions first, then
    the second runtime's."""
    order = list(profile.precisions)
    second = profile.second_runtime
    if second is not None and c.runtime == second.runtime:
        order = [""] * len(order) + list(second.precisions)
    return order.index(c.precision) if c.precision in order else len(order) + 99


def _latency_key(c: Candidate) -> tuple[float, int]:
    return (c.latency.p50_ms if c.latency else float("inf"), c.artifact_bytes)
