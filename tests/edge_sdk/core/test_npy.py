"""The fast .npy reader agrees with numpy's, and refuses what numpy refuses."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.core import npy
from tests.fuzz import mutations


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


def _header(shape: tuple[int, ...], descr: str = "<f4", version: tuple[int, int] = (1, 0)) -> bytes:
    buffer = io.BytesIO()
    write = (
        np.lib.format.write_array_header_1_0
        if version == (1, 0)
        else np.lib.format.write_array_header_2_0
    )
    write(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_a_header_that_promises_terabytes_is_refused_without_allocating(
    version: tuple[int, int],
) -> None:
    """numpy's own loader allocates what the header promises before reading the data; here the
    header alone decides, before anything is allocated."""
    data = _header((1 << 40, 1 << 10), version=version) + bytes(16)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="needs"):
            npy.loads(data)
        with pytest.raises(ValueError, match="over the 1024-byte cap"):
            npy.loads(data, max_bytes=1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_an_npz_is_not_an_npy() -> None:
    """np.load would hand back an NpzFile for these bytes; loads only ever returns an array."""
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros(3))
    with pytest.raises(ValueError, match="magic"):
        npy.loads(buffer.getvalue())


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f3', 'fortran_order': False, 'shape': (2,), }",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
        b"{'descr': '<f4', 'fortran_order': 1, 'shape': (2,), }",
        b"{'descr': 'O', 'fortran_order': False, 'shape': (2,), }",
        b"{'descr': ('<f4', (1000000,)), 'fortran_order': False, 'shape': (2,), }",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (" + b"9" * 5000 + b",), }",
        b"(" * 5000,
        b"{'descr': '\\q', 'fortran_order': False, 'shape': (2,), }",
    ],
)
def test_malformed_headers_are_a_value_error(header: bytes) -> None:
    data = npy.MAGIC + b"\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(8)
    with pytest.raises(ValueError):
        npy.loads(data)


def test_a_header_over_the_cap_is_refused_before_it_is_read() -> None:
    reads: list[int] = []
    stream = io.BytesIO(npy.MAGIC + b"\x02\x00" + (64 << 20).to_bytes(4, "little"))

    def read(n: int) -> bytes:
        reads.append(n)
        return stream.read(n)

    with pytest.raises(ValueError, match="10000-byte cap"):
        npy.read_header(read)
    assert max(reads) <= 8


@given(
    dtype=st.sampled_from(["<f4", ">f8", "<i8", "|u1", "|b1", "<c8", "<U2", "|S3", "<m8[s]"]),
    shape=st.lists(st.integers(0, 4), max_size=4),
    fortran=st.booleans(),
)
def test_any_array_numpy_writes_round_trips(dtype: str, shape: list[int], fortran: bool) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.int64).astype(dtype).reshape(shape)
    array = np.asfortranarray(array) if fortran else array
    got = npy.loads(npy.dumps(array))
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


@given(data=st.binary(max_size=300))
def test_any_bytes_are_an_array_or_a_value_error(data: bytes) -> None:
    for body in (data, npy.MAGIC + data, npy.MAGIC + b"\x01\x00" + data):
        try:
            array = npy.loads(body)
        except ValueError:
            continue
        assert isinstance(array, np.ndarray)


def test_fuzzed_npy_bytes_are_an_array_or_a_value_error() -> None:
    seeds = [
        npy.dumps(np.zeros((2, 3), np.float32)),
        npy.dumps(np.asfortranarray(np.ones((2, 3), ">i4"))),
        _header((4,), version=(2, 0)) + bytes(16),
        npy.dumps(np.array(["ab", "c"])),
    ]
    outcomes = {"array": 0, "refused": 0}
    tracemalloc.start()
    try:
        for case in mutations(seed=7, seeds=seeds, count=4000):
            try:
                array = npy.loads(case, max_bytes=1 << 16)
            except ValueError:
                outcomes["refused"] += 1
            else:
                assert isinstance(array, np.ndarray) and array.nbytes <= 1 << 16
                outcomes["array"] += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcomes["array"] > 0 and outcomes["refused"] > 0
    assert peak < 4 << 20
