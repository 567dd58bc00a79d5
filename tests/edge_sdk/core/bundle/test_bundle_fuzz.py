"""Hostile bundle files: Hypothesis over manifest JSON, and seeded fuzz loops (tests/fuzz.py) over
real bundle bytes, manifests inside a valid zip, and golden .npz files. Only our own errors may
escape, in bounded memory."""

from __future__ import annotations

import io
import json
import math
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.core import golden
from edge_sdk.core.bundle import write_bundle
from edge_sdk.core.bundle.manifest import Bundle, GoldenInfo, Manifest, sha256
from edge_sdk.core.bundle.reader import read_bundle, read_header
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import BundleError, EdgeSdkError
from tests.fuzz import mutations

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, 10**300, -(10**300)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "model.onnx", "model.tflite", "onnx", "tflite", "float32", "a" * 300])
)
JSON = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)


def _small_bundle() -> Bundle:
    """A valid bundle with real golden vectors and a tiny stand-in artifact."""
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    golden_bytes = golden.pack({"x": x}, {"y": x[:, :2] * 2})
    artifact = b"\x08\x07fake-onnx"
    manifest = Manifest(
        name="m",
        version=3,
        label="v3",
        profile="x86-64",
        runtime="onnx",
        precision="fp32",
        artifact="model.onnx",
        artifact_sha256=sha256(artifact),
        artifact_bytes=len(artifact),
        inputs=(TensorSpec("x", ("batch", 4), "float32", "NC"),),
        outputs=(TensorSpec("y", ("batch", 2), "float32", "NC"),),
        golden=GoldenInfo(2, 1e-3, 0.0),
        created="2026-11-25T00:00:00+00:00",
        report={"candidates": [{"name": "fp32"}], "notes": ["n"]},
        runtime_settings={"providers": ["CPUExecutionProvider"], "threads": 1},
    )
    return Bundle(manifest, artifact, golden_bytes, None, manifest.to_bytes())


def _accepts_or_refuses(data: bytes) -> Manifest | None:
    try:
        manifest = Manifest.from_bytes(data, "fuzz")
    except BundleError as e:
        assert "\n" not in str(e)
        return None
    # What was accepted re-encodes as strict JSON (no NaN or infinity) and nests shallowly.
    json.dumps(manifest.to_json(), allow_nan=False)
    assert math.isfinite(manifest.golden.atol) and math.isfinite(manifest.golden.rtol)
    return manifest


@given(JSON)
def test_any_json_as_a_manifest_is_read_or_refused(doc: Any) -> None:
    _accepts_or_refuses(json.dumps(doc).encode())


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key in sorted(node):
            out.extend(_paths(node[key], (*prefix, key)))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out.extend(_paths(child, (*prefix, i)))
    return out


VALID_DOC = _small_bundle().manifest.to_json()
PATHS = _paths(VALID_DOC)[1:]


@given(st.sampled_from(PATHS), JSON, st.booleans())
def test_a_valid_manifest_with_any_field_replaced_or_deleted(
    path: tuple[Any, ...], value: Any, delete: bool
) -> None:
    doc = json.loads(json.dumps(VALID_DOC))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _accepts_or_refuses(json.dumps(doc).encode())


@settings(max_examples=50)
@given(st.integers(min_value=33, max_value=5000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_one_refusal(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    doc = dict(VALID_DOC)
    raw = json.dumps(doc).replace(
        '"report": {', '"report": {"deep": ' + opener * depth + "1" + closer * depth + ", ", 1
    )
    with pytest.raises(BundleError, match="nest"):
        Manifest.from_bytes(raw.encode(), "deep")


def _zip_with_manifest(manifest: bytes, base: Bundle) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("manifest.json", manifest)
        zf.writestr("model.onnx", base.artifact)
        zf.writestr("golden.npz", base.golden)
    return buffer.getvalue()


def _read_all_ways(path: Path) -> None:
    """read_bundle and read_header, then the golden vectors as selftest reads them: only
    BundleError may escape."""
    for read in (read_header, read_bundle):
        try:
            read(path)
        except BundleError as e:
            assert "\n" not in str(e)
    try:
        b = read_bundle(path)
        m = b.manifest
        golden.unpack(b.golden, m.inputs, m.outputs, m.golden.count)
    except BundleError:
        pass


def test_fuzzed_manifests_inside_a_valid_zip(tmp_path: Path) -> None:
    base = _small_bundle()
    path = tmp_path / "fuzz.edgebundle"
    for case in mutations(seed=14, seeds=[base.manifest_bytes], count=2000):
        path.write_bytes(_zip_with_manifest(case, base))
        _read_all_ways(path)


def test_fuzzed_bundle_bytes(tmp_path: Path) -> None:
    source = tmp_path / "seed.edgebundle"
    write_bundle(source, _small_bundle())
    path = tmp_path / "fuzz.edgebundle"
    tracemalloc.start()
    try:
        for case in mutations(seed=15, seeds=[source.read_bytes()], count=2000):
            path.write_bytes(case)
            _read_all_ways(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"peak {peak >> 20} MiB"


def test_fuzzed_golden_npz() -> None:
    base = _small_bundle()
    m = base.manifest
    deflated = io.BytesIO()
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.savez_compressed(deflated, **{"input/x": x, "output/y": x[:, :2]})
    tracemalloc.start()
    try:
        for case in mutations(seed=16, seeds=[base.golden, deflated.getvalue()], count=3000):
            try:
                golden.unpack(case, m.inputs, m.outputs, m.golden.count)
            except BundleError as e:
                assert "\n" not in str(e)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"peak {peak >> 20} MiB"


def test_fuzzed_real_signed_bundle(
    digits_build: dict[str, Any], signing_keys: Path, tmp_path: Path
) -> None:
    """Mutations of the real signed digits bundle through read and verify: a refusal or a
    verification failure, never another exception. Fewer cases: each is a 1 MB file."""
    from edge_sdk.core.trust import verify_bundle
    from edge_sdk.signing.keys import load_trust_root

    root = load_trust_root(signing_keys / "root.json")
    seed = Path(str(digits_build["bundle"])).read_bytes()
    # Mutate the small members' region (the zip directory and the metadata at the end) most.
    path = tmp_path / "fuzz.edgebundle"
    head, tail = seed[:-16_384], seed[-16_384:]
    for case in mutations(seed=17, seeds=[tail], count=400):
        path.write_bytes(head + case)
        try:
            verify_bundle(root, read_bundle(path), str(path))
        except EdgeSdkError as e:
            assert "\n" not in str(e)


DTYPES = st.sampled_from(["float32", "float64", "int64", "uint8", "bool", "float16", "<U3", ">f4"])


@given(
    DTYPES,
    st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=4),
    st.booleans(),
    st.integers(min_value=0, max_value=3),
)
def test_any_golden_arrays_are_accepted_only_as_the_manifest_says(
    dtype: str, shape: list[int], deflate: bool, count: int
) -> None:
    m = _small_bundle().manifest
    x = np.zeros(shape, dtype=dtype)
    y = np.zeros((count, 2), dtype=np.float32)
    buffer = io.BytesIO()
    (np.savez_compressed if deflate else np.savez)(buffer, **{"input/x": x, "output/y": y})
    try:
        inputs, _ = golden.unpack(buffer.getvalue(), m.inputs, m.outputs, m.golden.count)
    except BundleError as e:
        assert "\n" not in str(e)
        return
    assert inputs["x"].dtype == np.float32 and inputs["x"].shape == (2, 4) and count == 2
