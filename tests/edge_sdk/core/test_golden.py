from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from edge_sdk.core.golden import MAX_ARRAY_BYTES, MAX_ARRAYS, check, pack, tolerance_for, unpack
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import BundleError


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


# -- Golden files from a bundle are hostile until checked -----------------------------------


def _spec_x() -> tuple[TensorSpec, ...]:
    return (TensorSpec("x", ("batch", 3), "float32"),)


def _spec_y() -> tuple[TensorSpec, ...]:
    return (TensorSpec("y", ("batch", 3), "float32"),)


def test_unpack_checks_the_vectors_against_the_manifest() -> None:
    inputs, outputs = _vectors()
    data = pack(inputs, outputs)
    got_in, got_out = unpack(data, _spec_x(), _spec_y(), 4)
    assert np.array_equal(got_in["x"], inputs["x"]) and np.array_equal(got_out["y"], outputs["y"])
    with pytest.raises(BundleError, match="4 vectors, the manifest says 8"):
        unpack(data, _spec_x(), _spec_y(), 8)
    with pytest.raises(BundleError, match="is float32, the manifest says int64"):
        unpack(data, (TensorSpec("x", ("batch", 3), "int64"),), _spec_y())
    with pytest.raises(BundleError, match="has shape"):
        unpack(data, (TensorSpec("x", ("batch", 5), "float32"),), _spec_y())
    with pytest.raises(BundleError, match="lack input 'z'"):
        unpack(data, (TensorSpec("z", ("batch", 3), "float32"),), _spec_y())


def test_deflated_npz_is_read_and_fortran_order_kept() -> None:
    buffer = io.BytesIO()
    x = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    np.savez_compressed(buffer, **{"input/x": x, "output/y": x * 2})
    got_in, _ = unpack(buffer.getvalue(), _spec_x(), _spec_y(), 4)
    assert np.array_equal(got_in["x"], x)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"input/x.npy": b"\x93NUMPY\x01\x00", "output/y.npy": b""}, "unreadable"),
        ({"../x.npy": b"", "output/y.npy": b""}, "unexpected member"),
        ({"input/x.pkl": b"", "output/y.npy": b""}, "unexpected member"),
    ],
)
def test_malformed_npz_members_are_refused(members: dict[str, bytes], message: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(BundleError, match=message):
        unpack(buffer.getvalue())


def test_pickled_objects_are_refused_unread() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{"input/x": np.array([object()] * 2), "output/y": np.zeros(2)})
    with pytest.raises(BundleError, match="golden vectors are unreadable"):
        unpack(buffer.getvalue())


def test_too_many_arrays_are_refused_from_the_directory() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(MAX_ARRAYS + 1):
            zf.writestr(f"input/x{i}.npy", b"")
    with pytest.raises(BundleError, match="over the cap"):
        unpack(buffer.getvalue())


def test_arrays_over_the_total_cap_are_refused_before_reading() -> None:
    half = MAX_ARRAY_BYTES // 2 // 4 + 1  # float32 elements: two of them exceed the cap
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (half,)}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("input/x.npy", header.getvalue() + bytes(half * 4))
        zf.writestr("output/y.npy", header.getvalue() + bytes(half * 4))
    assert len(buffer.getvalue()) < 1 << 20
    with pytest.raises(BundleError, match="over what is left"):
        unpack(buffer.getvalue())
