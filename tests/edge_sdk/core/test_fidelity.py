from __future__ import annotations

import numpy as np

from edge_sdk.core.fidelity import accuracy, compare


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


def test_one_value_per_sample_is_judged_by_its_error_not_its_sign() -> None:
    # A regressor's outputs: per-sample cosine of one number is 1.0 whatever it became.
    ref = np.random.default_rng(1).uniform(1.0, 5.0, (200, 1)).astype(np.float32)
    assert compare([ref], [ref.copy()]).cosine == 1.0
    assert compare([ref], [ref * 1.5]).cosine < 0.6  # every prediction 50% off
    moved = ref.copy()
    moved[:5] *= 1.08  # 2.5% of the predictions 8% off: the fp16 tree ensemble's damage
    assert 0.98 < compare([ref], [moved]).cosine < 0.99  # under the profiles' 0.99 budget
    assert compare([ref[:, 0]], [ref[:, 0] * 1.001]).cosine > 0.998  # a 1-D output too


def test_an_all_zero_scalar_output_is_only_equal_to_itself() -> None:
    zeros = np.zeros((4, 1), np.float32)
    assert compare([zeros], [zeros.copy()]).cosine == 1.0
    assert compare([zeros], [zeros + 1]).cosine == 0.0


def test_values_are_judged_by_closeness_alone() -> None:
    # 21 (x, y, z) landmarks: the largest coordinate's index is no class, and two fingertips
    # a pixel apart swap it under any rounding. auto reads [N, 63] as class scores; values
    # does not.
    rng = np.random.default_rng(2)
    landmarks = rng.uniform(0, 224, (32, 63)).astype(np.float32)
    moved = landmarks + rng.normal(0, 2.0, landmarks.shape).astype(np.float32)
    auto = compare([landmarks], [moved])
    values = compare([landmarks], [moved], "values")
    assert auto.top1_agreement is not None and auto.top1_agreement < 0.9
    assert values.top1_agreement is None
    assert values.cosine == auto.cosine and values.max_abs_error == auto.max_abs_error
    assert compare([landmarks], [moved], "class-scores").top1_agreement == auto.top1_agreement
    labels = np.zeros(32, np.int64)
    assert accuracy([landmarks], labels) is not None
    assert accuracy([landmarks], labels, "values") is None


def test_each_output_has_its_own_figure() -> None:
    rng = np.random.default_rng(4)
    kept = rng.standard_normal((16, 8)).astype(np.float32)
    score = rng.uniform(0.1, 0.9, (16, 1)).astype(np.float32)
    f = compare([kept, score], [kept.copy(), score * 0.5])
    assert f.per_output[0] == 1.0
    assert abs(f.per_output[1] - 0.5) < 1e-6  # every score halved: relative error 0.5
    assert f.to_json()["per_output"] == list(f.per_output)
    assert abs(f.cosine - (16 * 1.0 + 16 * 0.5) / 32) < 1e-9  # the mean over every sample
