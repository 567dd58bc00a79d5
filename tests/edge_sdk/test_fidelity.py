from __future__ import annotations

import numpy as np

from edge_sdk.fidelity import accuracy, compare


def test_identical_outputs_are_perfect() -> None:
    scores = np.random.default_rng(0).standard_normal((20, 10)).astype(np.float32)
    f = compare([scores], [scores.copy()])
    assert f.top1_agreement == 1.0 and f.max_abs_error == 0.0
    assert abs(f.cosine - 1.0) < 1e-9


def test_flipped_argmax_and_error_are_measured() -> None:
    ref = np.eye(4, dtype=np.float32)
    cand = ref.copy()
    cand[0] = [0.0, 2.0, 0.0, 0.0]  # sample 0 now votes for class 1
    f = compare([ref], [cand])
    assert f.top1_agreement == 0.75
    assert f.max_abs_error == 2.0
    assert f.cosine < 1.0


def test_non_class_outputs_have_no_top1() -> None:
    ref = np.ones((5, 3, 4, 4), np.float32)
    assert compare([ref], [ref * 1.01]).top1_agreement is None


def test_accuracy_against_labels() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    assert accuracy([scores], np.array([0, 1, 1])) == 2 / 3
