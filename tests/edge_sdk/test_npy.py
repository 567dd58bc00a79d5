"""The fast .npy reader agrees with numpy's, and refuses what numpy refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edge_sdk import npy


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((1, 1, 8, 8), np.float32),
        np.arange(12, dtype=np.int64).reshape(3, 4),
        np.array(3.5, dtype=np.float64),  # zero dimensions
        np.ones((2, 0), np.uint8),  # no elements
        np.arange(6, dtype=">i4"),  # big-endian
    ],
)
def test_round_trip_matches_numpy(array: np.ndarray) -> None:
    data = npy.dumps(array)
    got = npy.loads(data)
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, np.load(io.BytesIO(data)))


def test_fortran_order_falls_back_to_numpy() -> None:
    array = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(npy.loads(npy.dumps(array)), array)


@pytest.mark.parametrize("cut", [5, 20, -4])
def test_truncated_or_padded_bytes_are_refused(cut: int) -> None:
    data = npy.dumps(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        npy.loads(data[:cut])
    with pytest.raises(ValueError):
        npy.loads(data + bytes(1))


def test_object_arrays_are_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        npy.loads(buffer.getvalue())
