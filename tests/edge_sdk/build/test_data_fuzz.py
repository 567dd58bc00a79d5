"""Hostile calibration and validation data: mutated .npz bytes and generated arrays (NaN, Inf,
strings, objects, odd shapes) reach the loader; only a one-line DataError may come out, memory
stays bounded, and what loads is finite numbers with a sample axis."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_sdk.build import data as data_module
from edge_sdk.build.data import Dataset, load_npz
from edge_sdk.errors import DataError
from tests.fuzz import mutations


def _npz(compress: bool, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)  # type: ignore[operator]
    return buffer.getvalue()


SEEDS = [
    _npz(False, input=np.linspace(0, 1, 2 * 8, dtype=np.float32).reshape(2, 1, 2, 4)),
    _npz(True, input=np.ones((3, 4), np.float32), labels=np.array([0, 1, 2])),
    _npz(False, a=np.arange(6, dtype=np.int64).reshape(3, 2), labels=np.array([1.0, 0.0, 1.0])),
    _npz(True, x=np.zeros((2, 2), ">f4"), y=np.array([[True, False], [False, True]])),
]


def _check(path: Path, result: Any) -> None:
    if isinstance(result, DataError):
        message = str(result)
        assert message and "\n" not in message and str(path) in message, message
        return
    assert isinstance(result, Dataset)
    for array in result.inputs.values():
        assert array.dtype.kind in "biuf" and array.ndim >= 1
        if array.dtype.kind == "f":
            assert np.isfinite(array).all()
    if result.labels is not None:
        assert result.labels.dtype == np.int64


def _load(path: Path) -> Any:
    try:
        return load_npz(path)
    except DataError as e:
        return e


def test_mutated_npz_files_give_data_or_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small cap, so that a mutated header that claims (and inflates to) much is refused.
    monkeypatch.setattr(data_module, "MAX_DATA_BYTES", 4 << 20)
    path = tmp_path / "data.npz"
    tracemalloc.start()
    try:
        for case in mutations(seed=15, seeds=SEEDS, count=3000):
            path.write_bytes(case)
            _check(path, _load(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20


def test_a_header_that_lies_costs_only_what_inflates(tmp_path: Path) -> None:
    """The zip member claims 1.5 GiB and its header agrees; 64 bytes are really there."""
    body = io.BytesIO()
    np.save(body, np.zeros((4, 4), np.float32))
    raw = body.getvalue().replace(b"(4, 4)", b"(100000, 4096)", 1)
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("input.npy", raw)
    # Point the member's declared size at what the header promises.
    blob = bytearray(path.read_bytes())
    size = len(raw).to_bytes(4, "little")
    claimed = (len(raw) + 100000 * 4096 * 4 - 64).to_bytes(4, "little")
    blob = blob.replace(size + size, size + claimed)  # local header: compressed, uncompressed
    path.write_bytes(bytes(blob))
    tracemalloc.start()
    try:
        result = _load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, DataError), result
    assert peak < 16 << 20


ARRAYS = st.one_of(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.float16]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=16),
    ),
    hnp.arrays(
        dtype=st.sampled_from([np.int8, np.int64, np.uint8, np.bool_, np.complex64]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    ),
    hnp.arrays(dtype=hnp.unicode_string_dtypes(max_len=4), shape=st.integers(0, 4)),
    hnp.arrays(dtype=hnp.byte_string_dtypes(max_len=4), shape=st.integers(0, 4)),
    st.builds(lambda n: np.array([{"k": i} for i in range(n)], dtype=object), st.integers(0, 3)),
)


@given(
    arrays=st.dictionaries(
        st.sampled_from(["input", "labels", "x", "y"]), ARRAYS, min_size=1, max_size=3
    ),
    compress=st.booleans(),
)
def test_generated_arrays_give_data_or_one_line(
    tmp_path_factory: pytest.TempPathFactory, arrays: dict[str, np.ndarray], compress: bool
) -> None:
    path = tmp_path_factory.getbasetemp() / "generated.npz"
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)  # type: ignore[operator]
    path.write_bytes(buffer.getvalue())
    result = _load(path)
    _check(path, result)
    has_bad_floats = any(
        a.dtype.kind == "f" and a.size and not np.isfinite(a).all() for a in arrays.values()
    )
    if has_bad_floats:
        assert isinstance(result, DataError)
    if any(a.dtype.kind in "OUSc" for a in arrays.values()):
        assert isinstance(result, DataError)
