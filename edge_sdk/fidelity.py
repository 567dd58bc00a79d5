"""How close a candidate's outputs stay to the source model's (pure numpy; host and agent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fidelity:
    top1_agreement: float | None  # only where the first output looks like class scores
    cosine: float  # mean per-sample cosine similarity over all outputs
    max_abs_error: float

    def to_json(self) -> dict[str, float | None]:
        return {
            "top1_agreement": self.top1_agreement,
            "cosine": self.cosine,
            "max_abs_error": self.max_abs_error,
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


def compare(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> Fidelity:
    """Outputs are lists over model outputs of arrays whose first axis counts samples."""
    if len(reference) != len(candidate):
        raise ValueError("reference and candidate have different output counts")
    cosines = [_per_sample_cosine(r, c) for r, c in zip(reference, candidate, strict=True)]
    max_abs = max(
        float(np.max(np.abs(r.astype(np.float64) - c.astype(np.float64)))) if r.size else 0.0
        for r, c in zip(reference, candidate, strict=True)
    )
    top1 = None
    if is_class_scores(reference[0]):
        top1 = float(np.mean(np.argmax(reference[0], 1) == np.argmax(candidate[0], 1)))
    return Fidelity(top1, float(np.mean(np.concatenate(cosines))), max_abs)


def accuracy(outputs: Sequence[np.ndarray], labels: np.ndarray) -> float | None:
    """Top-1 accuracy of the first output against integer labels, where that makes sense."""
    if not is_class_scores(outputs[0]) or len(outputs[0]) != len(labels):
        return None
    return float(np.mean(np.argmax(outputs[0], 1) == labels))
