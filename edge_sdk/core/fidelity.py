"""How close a candidate's outputs stay to the source model's (pure numpy; host and agent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fidelity:
    top1_agreement: float | None  # only where the first output looks like class scores
    # Mean per-sample cosine similarity over all outputs; for an output of one value per
    # sample, 1 - its relative L2 error over the samples (see _scalar_closeness).
    cosine: float
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


def compare(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> Fidelity:
    """Outputs are lists over model outputs of arrays whose first axis counts samples."""
    if len(reference) != len(candidate):
        raise ValueError("reference and candidate have different output counts")
    cosines = [_closeness(r, c) for r, c in zip(reference, candidate, strict=True)]
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
