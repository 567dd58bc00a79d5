"""``edge-sdk bench`` on every format the SDK runs (.onnx, .tflite, bundles), with ``--inputs``
for real inputs (a control value, a state), and one line when a model fails on what it is given.
Real models from the corpus: Silero VAD (an int64 sample-rate scalar and an LSTM state) and
MediaPipe's BlazeFace (.tflite without signatures)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corpus
from edge_sdk.build.benchmark import bench, load_inputs
from edge_sdk.errors import DataError, EdgeSdkError, ModelFileError
from tests.fuzz import mutations

Cli = Callable[..., tuple[int, str, str]]


def silero_full() -> Path:
    """Silero VAD as its wheel ships it for streaming: input, state [2, B, 128], sr (int64 0-d)."""
    return corpus.get("silero-vad").path().with_name("silero_vad.onnx")


def face_tflite() -> Path:
    return corpus.get("mp-face-detector").path()


def _vad_inputs(path: Path, sr: int = 16000, **changes: np.ndarray) -> Path:
    arrays = {
        "input": np.zeros((1, 512), np.float32),
        "state": np.zeros((2, 1, 128), np.float32),
        "sr": np.array(sr, np.int64),
    }
    arrays.update(changes)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_onnx_with_a_control_value_and_a_state_on_real_inputs(tmp_path: Path) -> None:
    r = bench(
        silero_full(),
        threads=1,
        seconds=0.2,
        input_shapes={},
        inputs=_vad_inputs(tmp_path / "vad.npz"),
    )
    assert r["format"] == "onnx" and r["latency_ms"]["runs"] > 0


def test_random_inputs_that_the_model_rejects_are_one_line(tmp_path: Path) -> None:
    # Random values for sr (and shapes guessed for the state) make the model fail inside an
    # If node: before, an internal error; now one line that says what to pass.
    with pytest.raises(DataError) as e:
        bench(
            silero_full(),
            threads=1,
            seconds=0.2,
            input_shapes={"input": (1, 512), "state": (2, 1, 128)},
        )
    message = str(e.value)
    assert "\n" not in message
    assert "fails on random inputs" in message and "--inputs FILE.npz" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sr": np.array(12345, np.int64)}, "fails on the inputs in"),  # a sample rate it lacks
        ({"state": np.zeros((3, 1, 128), np.float32)}, "fails on the inputs in"),
        ({"input": np.zeros((512,), np.float32)}, "fails on the inputs in"),  # no batch axis
        ({"extra": np.zeros(3, np.float32)}, "which the model does not take"),
    ],
)
def test_inputs_the_model_fails_on_are_one_line(
    tmp_path: Path, changes: dict[str, np.ndarray], expected: str
) -> None:
    path = _vad_inputs(tmp_path / "bad.npz", **changes)
    with pytest.raises(DataError) as e:
        bench(silero_full(), threads=1, seconds=0.1, input_shapes={}, inputs=path)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_missing_input_is_named(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    np.savez(path, input=np.zeros((1, 512), np.float32))
    with pytest.raises(DataError, match=r"lacks 'state', 'sr'"):
        bench(silero_full(), threads=1, seconds=0.1, input_shapes={}, inputs=path)


def test_tflite_without_signatures(tmp_path: Path) -> None:
    r = bench(face_tflite(), threads=1, seconds=0.2, input_shapes={})
    assert r["format"] == "tflite" and r["latency_ms"]["runs"] > 0
    # And on real inputs: a rendered face, NHWC as the file takes it.
    faces = corpus.get("mp-face-detector").make(1, 0)
    np.savez(tmp_path / "face.npz", **faces)  # type: ignore[arg-type]
    r = bench(face_tflite(), threads=1, seconds=0.2, input_shapes={}, inputs=tmp_path / "face.npz")
    assert r["inputs"] == str(tmp_path / "face.npz")


def test_tflite_on_inputs_of_the_wrong_shape_is_one_line(tmp_path: Path) -> None:
    np.savez(tmp_path / "small.npz", input=np.zeros((1, 64, 64, 5), np.float32))
    with pytest.raises(EdgeSdkError) as e:
        bench(face_tflite(), threads=1, seconds=0.1, input_shapes={}, inputs=tmp_path / "small.npz")
    assert "\n" not in str(e.value) and str(face_tflite()) in str(e.value)


def test_a_file_named_tflite_that_is_not_one(tmp_path: Path) -> None:
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"\x08\x01" * 100)
    with pytest.raises(ModelFileError, match="not a TFLite model"):
        bench(fake, threads=1, seconds=0.1, input_shapes={})


def test_cli_tflite_and_inputs(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("bench", face_tflite(), "--seconds", "0.2", "--json")
    assert code == 0, err
    code, out, err = cli(
        "bench", silero_full(), "--seconds", "0.2", "--inputs", _vad_inputs(tmp_path / "v.npz")
    )
    assert code == 0, err
    code, out, err = cli(
        "bench", silero_full(), "--seconds", "0.2", "--inputs", _vad_inputs(tmp_path / "b.npz", 7)
    )
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "fails on the inputs" in err
    assert "Traceback" not in err


def test_inputs_file_that_is_not_an_npz(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_inputs(tmp_path / "x.npz")
    np.savez(tmp_path / "s.npz", sr=np.array(["16000"]))
    with pytest.raises(DataError, match="must be numbers"):
        load_inputs(tmp_path / "s.npz")


def test_fuzz_inputs_files(tmp_path: Path) -> None:
    """3000 mutated --inputs files through the reader, the first 150 of them also timed on the
    real model: our one-line errors or a timing, never anything else (onnxruntime's own
    exceptions, numpy's, zipfile's), and memory bounded."""
    import tracemalloc

    seed = _vad_inputs(tmp_path / "seed.npz").read_bytes()
    target = tmp_path / "fuzz.npz"
    outcomes = {"read": 0, "refused": 0, "timed": 0}
    tracemalloc.start()
    try:
        for i, data in enumerate(mutations(seed=12, seeds=[seed], count=3000)):
            target.write_bytes(data)
            try:
                load_inputs(target)
                outcomes["read"] += 1
                if i < 150:
                    bench(silero_full(), threads=1, seconds=0.0, input_shapes={}, inputs=target)
                    outcomes["timed"] += 1
            except EdgeSdkError as e:
                assert "\n" not in str(e)
                outcomes["refused"] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    assert outcomes["timed"] >= 1 and outcomes["refused"] >= 500, outcomes


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(["input", "state", "sr"]),
    st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_]),
    st.lists(st.integers(0, 4), max_size=4),
)
def test_property_any_array_in_place_of_an_input(
    tmp_path_factory: pytest.TempPathFactory, name: str, dtype: type, shape: list[int]
) -> None:
    """Any dtype and shape in place of one input: a timing or one line, never a traceback."""
    path = _vad_inputs(tmp_path_factory.mktemp("prop") / "p.npz", **{name: np.ones(shape, dtype)})
    try:
        bench(silero_full(), threads=1, seconds=0.0, input_shapes={}, inputs=path)
    except EdgeSdkError as e:
        assert "\n" not in str(e)
