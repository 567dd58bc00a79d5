from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.errors import BundleError
from edge_sdk.golden import check, pack, tolerance_for


def _vectors() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    return {"x": x}, {"y": x * 2}


def test_matching_runtime_passes() -> None:
    inputs, outputs = _vectors()
    result = check(pack(inputs, outputs), lambda feed: {"y": feed["x"] * 2}, 1e-4, 0.0)
    assert result.passed and result.max_abs_error == 0.0


def test_runtime_outside_tolerance_fails_and_says_where() -> None:
    inputs, outputs = _vectors()
    result = check(pack(inputs, outputs), lambda feed: {"y": feed["x"] * 2 + 0.5}, 0.1, 0.0)
    assert not result.passed
    assert "output 'y'" in result.detail and "0.5" in result.detail


def test_missing_output_fails() -> None:
    inputs, outputs = _vectors()
    assert not check(pack(inputs, outputs), lambda feed: {"z": feed["x"]}, 1.0, 0.0).passed


def test_tolerance_scales_with_precision_and_range() -> None:
    out = [np.array([[-10.0, 10.0]])]
    assert (
        tolerance_for("fp32", out)[0]
        < tolerance_for("fp16", out)[0]
        < tolerance_for("int8_static", out)[0]
    )
    assert tolerance_for("int8_static", out)[0] == pytest.approx(1.0)


def test_garbage_is_a_bundle_error() -> None:
    with pytest.raises(BundleError):
        check(b"not an npz", lambda feed: {}, 1.0, 0.0)
