"""Seeded, bounded fuzz of the .tflite source: damaged copies of MediaPipe's face detector
(truncated, bytes changed in its FlatBuffer tables, random bytes behind the TFL3 identifier)
convert or fail with one EdgeSdkError line; a crash of TensorFlow Lite's interpreter inside
tf2onnx (some do crash it) stays in the child process."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corpus
from edge_sdk.build.pipeline import BuildRequest
from edge_sdk.build.sources.tflite import convert_tflite
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.errors import EdgeSdkError

RAW = corpus.get("mp-face-detector").path().read_bytes()
# The tables, offsets and shapes sit in the first few kilobytes; the weights after them.
TABLES = 4096


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["truncate", "tables", "random"]))
    if kind == "truncate":
        return RAW[: draw(st.integers(8, len(RAW) - 1))]
    if kind == "random":
        return RAW[:4] + b"TFL3" + draw(st.binary(min_size=0, max_size=2048))
    raw = bytearray(RAW)
    for offset, value in draw(
        st.lists(st.tuples(st.integers(8, TABLES - 1), st.integers(0, 255)), min_size=1, max_size=8)
    ):
        raw[offset] = value
    return bytes(raw)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus.get("mp-face-detector").write(tmp_path_factory.mktemp("d") / "v.npz", 2, 1)


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=damaged())
def test_damaged_tflite_converts_or_fails_in_one_line(
    raw: bytes, data: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    model = work / "model.tflite"
    model.write_bytes(raw)
    request = BuildRequest(
        model=model, profile=resolve_profile("jetson-nano"), out=work / "out", validation=data
    )
    try:
        convert_tflite(request, work)
    except EdgeSdkError as e:
        line = str(e)
        assert line and "\n" not in line and "Traceback" not in line
        assert str(model) in line
