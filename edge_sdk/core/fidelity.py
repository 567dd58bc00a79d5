"""How close a candidate's outputs stay to the source model's (pure numpy; host and agent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

# What a model's first output holds, as the user declares it (``edge-sdk build
# --first-output``): "auto" reads any [N, K>1] float output as class scores (judged by top-1
# agreement too); "class-scores" insists on it; "values" (coordinates, boxes, embeddings,
# regressions) is judged by closeness alone. A keypoint model's 63 landmark coordinates are
# [N, 63] floats too, and the index of the largest coordinate is no class: auto cannot tell
# them from a logits classifier's scores, so the user says.
FirstOutput = Literal["auto", "class-scores", "values"]
FIRST_OUTPUT_KINDS: tuple[str, ...] = get_args(FirstOutput)


@dataclass(frozen=True)
class Fidelity:
    top1_agreement: float | None  # only where the first output looks like class scores
    # Mean per-sample cosine similarity over all outputs; for an output of one value per
    # sample, 1 - its relative L2 error over the samples (see _scalar_closeness).
    cosine: float
    max_abs_error: float
    # The same closeness for each output on its own, in the model's output order: a model with
    # several heads can keep most of them and lose one (a keypoint model's presence score).
    per_output: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "top1_agreement": self.top1_agreement,
            "cosine": self.cosine,
            "max_abs_error": self.max_abs_error,
            "per_output": list(self.per_output),
        }


def is_class_scores(array: np.ndarray) -> bool:
    return array.ndim == 2 and array.shape[1] > 1 and array.dtype.kind == "f"


def _per_sample_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    dot = np.sum(a * b, axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    # Two all-zero vectors are identical; one all-zero vector against a non-zero one is not.
    same = np.all(a == b, axis=1)
    return np.where(norms > 0, dot / np.maximum(norms, 1e-300), np.where(same, 1.0, 0.0))


def _scalar_closeness(a: np.ndarray, b: np.ndarray) -> float:
    """1 - ||a - b|| / ||a|| over all samples of an output that holds one value per sample.

    The cosine of two single numbers is their sign's agreement: a regressor whose every
    prediction moved by half, or a few by 8%, would score 1.0. Cosine is scale-blind, so the
    replacement is not the samples' cosine either but the relative error of the whole column:
    1.0 when equal, 0.99 when the outputs moved by 1% of their size overall.
    """
    a = a.reshape(-1).astype(np.float64)
    b = b.reshape(-1).astype(np.float64)
    norm = float(np.linalg.norm(a))
    if norm == 0.0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return max(0.0, 1.0 - float(np.linalg.norm(a - b)) / norm)


def _closeness(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One score per sample: its cosine, or the column's closeness for one value per sample."""
    if a.size and a.size == len(a):
        return np.full(len(a), _scalar_closeness(a, b))
    return _per_sample_cosine(a, b)


def judges_top1(first: np.ndarray, first_output: FirstOutput = "auto") -> bool:
    """Whether the first output is judged by its top-1 class (see ``FirstOutput``)."""
    return first_output != "values" and is_class_scores(first)


def compare(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    first_output: FirstOutput = "auto",
) -> Fidelity:
    """Outputs are lists over model outputs of arrays whose first axis counts samples."""
    if len(reference) != len(candidate):
        raise ValueError("reference and candidate have different output counts")
    cosines = [_closeness(r, c) for r, c in zip(reference, candidate, strict=True)]
    max_abs = max(
        float(np.max(np.abs(r.astype(np.float64) - c.astype(np.float64)))) if r.size else 0.0
        for r, c in zip(reference, candidate, strict=True)
    )
    top1 = None
    if judges_top1(reference[0], first_output):
        top1 = float(np.mean(np.argmax(reference[0], 1) == np.argmax(candidate[0], 1)))
    per_output = tuple(float(np.mean(c)) if c.size else 1.0 for c in cosines)
    return Fidelity(top1, float(np.mean(np.concatenate(cosines))), max_abs, per_output)


def accuracy(
    outputs: Sequence[np.ndarray], labels: np.ndarray, first_output: FirstOutput = "auto"
) -> float | None:
    """Top-1 accuracy of the first output against integer labels, where that makes sense."""
    if not judges_top1(outputs[0], first_output) or len(outputs[0]) != len(labels):
        return None
    return float(np.mean(np.argmax(outputs[0], 1) == labels))
