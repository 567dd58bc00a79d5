"""Predict bodies from anyone (issue 11, classes 10 and 11): every body the codec is given, in
every content type the API accepts, is either arrays that fit the model and the device's limits
or a 4xx RequestError with one line; never another exception, never memory beyond the limits.
Bombs are judged from their headers: refused before their data is read or inflated."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.serving import codec
from agent.serving.codec import Limits, RequestError
from edge_sdk.core import npy
from edge_sdk.core.tensors import TensorSpec
from tests.fuzz import mutations

DIGITS = [TensorSpec(name="input", shape=("batch", 1, 8, 8), dtype="float32")]
PAIR = [
    TensorSpec(name="image", shape=("batch", 4), dtype="float32"),
    TensorSpec(name="mask", shape=("batch", 4), dtype="int64"),
]
LIMITS = Limits(max_samples=64, max_decoded_bytes=1 << 20)
TYPES = [codec.JSON, codec.NPZ, codec.NPY, codec.OCTET, "", "text/plain"]
X = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)


def npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)  # type: ignore[operator]
    return buffer.getvalue()


def outcome(body: bytes, content_type: str, specs: list[TensorSpec]) -> int:
    """200 for arrays that fit, the RequestError's status otherwise; anything else fails."""
    try:
        arrays = codec.decode(body, content_type, specs, LIMITS)
    except RequestError as e:
        assert 400 <= e.status < 500, e
        assert e.message and "\n" not in e.message and len(e.message) < 400, e.message
        return e.status
    for spec in specs:  # what passes is exactly what the model takes, within the limits
        array = arrays[spec.name]
        assert array.dtype == np.dtype(spec.dtype) and array.ndim == len(spec.shape)
        assert 1 <= array.shape[0] <= LIMITS.max_samples
    assert sum(a.nbytes for a in arrays.values()) <= LIMITS.max_decoded_bytes
    return 200


def valid_bodies() -> list[tuple[bytes, str, list[TensorSpec]]]:
    pair = {"image": np.ones((2, 4), np.float32), "mask": np.zeros((2, 4), np.int64)}
    return [
        (json.dumps({"inputs": {"input": X.tolist()}}).encode(), codec.JSON, DIGITS),
        (npz(input=X), codec.NPZ, DIGITS),
        (npz(True, input=X), codec.NPZ, DIGITS),
        (npy.dumps(X), codec.NPY, DIGITS),
        (npy.dumps(X), codec.OCTET, DIGITS),
        (npz(**pair), codec.NPZ, PAIR),
        (json.dumps({"inputs": {k: v.tolist() for k, v in pair.items()}}).encode(), "", PAIR),
    ]


def test_valid_bodies_decode_in_every_content_type() -> None:
    for body, content_type, specs in valid_bodies():
        assert outcome(body, content_type, specs) == 200, content_type
    np.testing.assert_array_equal(codec.decode(npz(True, input=X), codec.NPZ, DIGITS)["input"], X)


@pytest.mark.parametrize("index", range(len(valid_bodies())))
def test_fuzzed_bodies_are_arrays_or_a_4xx(index: int) -> None:
    """A seeded byte-level fuzz loop: each valid body mutated ~1,300 times, and every mutant
    sent as every content type the API accepts (about 8,000 decodes per body)."""
    body, _, specs = valid_bodies()[index]
    statuses: dict[int, int] = {}
    tracemalloc.start()
    try:
        for case in mutations(seed=11 + index, seeds=[body], count=1300):
            for content_type in TYPES:
                status = outcome(case, content_type, specs)
                statuses[status] = statuses.get(status, 0) + 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert set(statuses) <= {200, 400, 413, 415, 422}, statuses
    assert statuses.get(400, 0) > 0 and statuses.get(415, 0) > 0
    assert peak < 4 * LIMITS.max_decoded_bytes + (8 << 20), peak


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.integers(min_value=10**300, max_value=10**400),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=40,
)


@given(inputs=st.dictionaries(st.sampled_from(["input", "image", "mask", "x"]), json_values))
@settings(max_examples=300)
def test_any_json_document_is_arrays_or_a_4xx(inputs: dict[str, object]) -> None:
    for specs in (DIGITS, PAIR):
        outcome(json.dumps({"inputs": inputs}).encode(), codec.JSON, specs)
        outcome(json.dumps(inputs).encode(), codec.JSON, specs)


@given(
    dtype=st.sampled_from(["<f4", "<f8", "<i8", "|u1", ">f4", "<U3", "|b1", "<c8"]),
    shape=st.lists(st.integers(0, 5), max_size=5),
    fortran=st.booleans(),
    cut=st.integers(-3, 3),
)
@settings(max_examples=300)
def test_any_npy_and_npz_of_any_array_is_arrays_or_a_4xx(
    dtype: str, shape: list[int], fortran: bool, cut: int
) -> None:
    array = np.zeros(shape, dtype=dtype)
    array = np.asfortranarray(array) if fortran else array
    data = npy.dumps(array)
    data = data[:cut] if cut < 0 else data + bytes(cut)
    for specs in (DIGITS, PAIR):
        for content_type in (codec.NPY, codec.OCTET):
            outcome(data, content_type, specs)
        for names in (("input",), ("image", "mask"), ("x",)):
            outcome(npz(fortran, **{n: array for n in names}), codec.NPZ, specs)


@given(header=st.binary(max_size=200), data=st.binary(max_size=64))
def test_any_npy_header_is_an_array_or_a_4xx(header: bytes, data: bytes) -> None:
    for version in (b"\x01\x00", b"\x02\x00"):
        size = len(header).to_bytes(2 if version == b"\x01\x00" else 4, "little")
        outcome(npy.MAGIC + version + size + header + data, codec.NPY, DIGITS)


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy header alone, as numpy writes it, for an array that need not exist."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def _inflating_npz(name: str, shape: tuple[int, ...], data_bytes: int) -> bytes:
    """A one-member .npz whose header says ``shape`` and whose deflated data inflates to
    ``data_bytes`` zeros. Built the way a bomb is: one MiB of zeros deflated once after a full
    flush, repeated (so the bomb never exists in memory and costs milliseconds). Its CRC is left
    0: nothing that refuses it reads that far."""
    header = npy_header(shape)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    stream = head + block * (data_bytes >> 20) + deflate.flush()
    raw = len(header) + (data_bytes >> 20 << 20)
    path = f"{name}.npy".encode()
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(stream), raw, len(path), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50, 20, 20, 0, 8, 0, 0, 0, len(stream), raw, len(path), 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    size = len(central) + len(path)
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, size, len(local) + len(path) + len(stream), 0
    )
    return local + path + stream + central + path + end


def test_an_npz_bomb_is_refused_from_its_header_before_it_inflates() -> None:
    """The issue's bomb: ~1 MB of deflate that inflates to 1 GiB. Its header promises 1 GiB,
    so it is a 413 before a byte of it is inflated: memory stays flat."""
    samples = (1 << 30) // (64 * 4)
    bomb = _inflating_npz("input", (samples, 1, 8, 8), 1 << 30)
    assert len(bomb) < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(RequestError) as refused:
            codec.decode(bomb, codec.NPZ, DIGITS, Limits(max_samples=1 << 30))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413 and "max_decoded_bytes" in refused.value.message
    assert peak < 1 << 20, peak
    # With the default sample cap, the samples are what it is refused for.
    with pytest.raises(RequestError, match="max_samples"):
        codec.decode(bomb, codec.NPZ, DIGITS)


def test_an_npz_whose_data_outgrows_its_header_is_refused_without_inflating_it() -> None:
    """A small header over a bomb's data: the zip's own size disagrees with the header."""
    lying = _inflating_npz("input", (1, 1, 8, 8), 256 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(RequestError) as refused:
            codec.decode(lying, codec.NPZ, DIGITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.status == 400 and "disagrees" in refused.value.message
    assert peak < 1 << 20, peak


def test_many_samples_are_refused_from_the_header() -> None:
    """The issue's 100,000 samples: a 413 that names the setting, before the data is read."""
    body = npy_header((100_000, 1, 8, 8)) + bytes(1024)
    with pytest.raises(RequestError) as refused:
        codec.decode(body, codec.NPY, DIGITS)
    assert refused.value.status == 413 and "serving.max_samples" in refused.value.message
    rows = json.dumps({"inputs": {"input": [[[[0.0]]]] * 300}}).encode()
    with pytest.raises(RequestError, match="max_samples"):
        codec.decode(rows, codec.JSON, DIGITS)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "phrase"),
    [
        (b"[" + b"0," * 300_000 + b"0]", codec.JSON, 413, "send .npy or .npz"),
        (b'{"inputs": {"input": ' + b"[" * 5000 + b"]" * 5000 + b"}}", codec.JSON, 400, "deep"),
        (
            b'{"inputs": {"input": [[[[' + b"9" * 400 + b"]]]]}}",
            codec.JSON,
            422,
            "rectangular",
        ),
        (b'{"inputs": {"input": [[[[1e300]]]]}}', codec.JSON, 422, "overflow"),
        (npz(input=X), codec.NPY, 400, f"send it as {codec.NPZ}"),
        (npy.dumps(X), codec.NPZ, 400, f"send it as {codec.NPY}"),
        (b"\xff\xfe garbage", codec.JSON, 400, "not valid JSON"),
        (npz(input=X.astype(np.float64)), codec.NPZ, 422, "float64"),
        (npz(input=X, extra=X), codec.NPZ, 422, "archive holds 2 arrays"),
    ],
)
def test_the_issues_bad_bodies_are_a_4xx_with_one_line(
    body: bytes, content_type: str, status: int, phrase: str
) -> None:
    with pytest.raises(RequestError) as refused:
        codec.decode(body, content_type, DIGITS)
    assert refused.value.status == status and phrase in refused.value.message
    assert "\n" not in refused.value.message


def test_an_npz_with_another_compression_method_is_refused_before_inflating() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("input.npy", npy.dumps(X))
    with pytest.raises(RequestError) as refused:
        codec.decode(buffer.getvalue(), codec.NPZ, DIGITS)
    assert refused.value.status == 415 and "np.savez" in refused.value.message


def test_a_big_request_within_the_limits_costs_about_its_own_size() -> None:
    batch = np.ones((256, 1, 8, 8), np.float32)
    for body, content_type in ((npz(True, input=batch), codec.NPZ), (npy.dumps(batch), codec.NPY)):
        tracemalloc.start()
        try:
            arrays = codec.decode(body, content_type, DIGITS)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(arrays["input"], batch)
        assert peak < 3 * batch.nbytes + (64 << 10), (content_type, peak)
