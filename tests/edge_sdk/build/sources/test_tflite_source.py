""".tflite files as build sources (edge_sdk/build/sources/tflite.py), on MediaPipe's own models
from its wheel (corpus/): converted by tf2onnx, checked against the file in LiteRT, built for
an ONNX profile and, through onnx2tf, for a TFLite one; damaged files get one line, a file that
crashes TensorFlow Lite's interpreter included."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import corpus
from edge_sdk.build.pipeline import BuildRequest, build
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.errors import BuildError, ModelFileError
from tests.edge_sdk.source_helpers import Cli, error_line

# One byte of MediaPipe's face detector that makes TensorFlow Lite's interpreter, which
# tf2onnx opens the file in, die of SIGSEGV (found by the fuzz loop in test_tflite_source_fuzz).
CRASHING_BYTE = (124, 199)


def _request(
    model: Path, profile: str, tmp_path: Path, samples: int, data: str = "mp-face-detector"
) -> BuildRequest:
    m = corpus.get(data)
    return BuildRequest(
        model=model,
        profile=resolve_profile(profile),
        out=tmp_path / "out",
        calibration=m.write(tmp_path / "cal.npz", samples, 0),
        validation=m.write(tmp_path / "val.npz", samples, 1),
        timing_seconds=0.2,
    )


def test_face_detector_tflite_builds_for_an_onnx_profile(tmp_path: Path) -> None:
    source = corpus.get("mp-face-detector").path()
    r = build(_request(source, "jetson-nano", tmp_path, 8)).report
    notes = " | ".join(r["notes"])
    assert r["source"] == str(source)
    assert "converted from TFLite to ONNX by tf2onnx" in notes
    assert "checked against the .tflite file in LiteRT on 8 samples: cosine 1.0000" in notes
    b = read_bundle(Path(r["bundle"]))
    assert b.manifest.artifact == "model.onnx"
    assert [s.name for s in b.manifest.inputs] == ["input"]  # the file's own tensor names
    assert r["precision"] in ("fp16", "fp32")


def test_hand_landmark_tflite_builds_back_to_tflite_for_the_raspberry_pi(tmp_path: Path) -> None:
    source = corpus.get("mp-hand-landmark").path()
    r = build(_request(source, "raspberry-pi-4", tmp_path, 8, "mp-hand-landmark")).report
    assert r["runtime"] in ("tflite", "onnx")
    tflite = [c for c in r["candidates"] if c["runtime"] == "tflite"]
    assert tflite and all(c["error"] is None for c in tflite), tflite  # onnx2tf took it
    assert read_bundle(Path(r["bundle"])).manifest.artifact.startswith("model.")


def test_not_a_tflite_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a TFLite model") as info:
        build(_request(bad, "x86-64", tmp_path, 4))
    assert "\n" not in str(info.value)


def test_truncated_file_is_one_line(tmp_path: Path) -> None:
    raw = corpus.get("mp-face-detector").path().read_bytes()
    bad = tmp_path / "model.tflite"
    bad.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(BuildError, match="tf2onnx cannot convert it to ONNX") as info:
        build(_request(bad, "x86-64", tmp_path, 4))
    assert "\n" not in str(info.value)


def test_a_file_that_crashes_the_interpreter_is_one_line_and_the_cli_exits(
    tmp_path: Path, cli: Cli
) -> None:
    raw = bytearray(corpus.get("mp-face-detector").path().read_bytes())
    offset, value = CRASHING_BYTE
    raw[offset] = value
    bad = tmp_path / "crash.tflite"
    bad.write_bytes(bytes(raw))
    with pytest.raises(BuildError, match=r"tf2onnx crashed on it \(SIGSEGV\)") as info:
        build(_request(bad, "x86-64", tmp_path, 4))
    assert "\n" not in str(info.value)
    code, _, err = cli("build", bad, "--profile", "x86-64", "--out", tmp_path / "cli")
    assert code == BuildError.exit_code, err
    assert "crashed on it (SIGSEGV)" in error_line(err)
    assert "Traceback" not in err
    assert not (tmp_path / "cli").exists() or not any((tmp_path / "cli").iterdir())


def test_a_child_that_does_not_finish_is_stopped_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that kept tf2onnx busy forever would hold the build: the child is killed at the
    limit (here shortened so that the real conversion cannot finish inside it)."""
    from edge_sdk.build.sources import tflite

    monkeypatch.setattr(tflite, "CHILD_TIMEOUT", 0.3)
    source = corpus.get("mp-face-detector").path()
    with pytest.raises(BuildError, match=r"tf2onnx did not finish within 0.3 s") as info:
        build(_request(source, "x86-64", tmp_path, 4))
    assert "\n" not in str(info.value)


def test_without_tf2onnx_one_line_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from edge_sdk.errors import UnsupportedError

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed
    source = corpus.get("mp-face-detector").path()
    with pytest.raises(UnsupportedError, match=r"TFLite sources need tf2onnx.*\[tflite\]'$"):
        build(_request(source, "x86-64", tmp_path, 4))


def test_hand_landmarks_declared_values_are_not_judged_by_top1(tmp_path: Path) -> None:
    """The first output is 21 landmarks, [N, 63]: read as class scores (auto), int8 was refused
    for a 15% top-1 "disagreement" between coordinates. Declared values, no candidate is
    judged or refused by top-1, and the report says what was declared."""
    source = corpus.get("mp-hand-landmark").path()
    request = replace(
        _request(source, "arm64-generic", tmp_path, 8, "mp-hand-landmark"), first_output="values"
    )
    r = build(request).report
    assert r["first_output"] == "values"
    built = [c for c in r["candidates"] if c["fidelity"] is not None]
    assert any(c["precision"] == "int8_static" for c in built)
    for c in built:
        for judged in ("fidelity", "exact_fidelity", "host_fidelity"):
            assert c[judged] is None or c[judged]["top1_agreement"] is None, c
        assert "top-1" not in (c["reason"] or ""), c
    assert r["fidelity"]["top1_agreement"] is None
    # Each of its four heads has its own figure, by name: the landmarks survive int8 where
    # the presence score does not (README, corpus).
    assert r["outputs"] == ["Identity", "Identity_1", "Identity_2", "Identity_3"]
    int8 = [c for c in built if c["precision"] == "int8_static"]
    best = max(int8, key=lambda c: c["fidelity"]["cosine"])
    landmarks, presence, _, _ = best["fidelity"]["per_output"]
    assert landmarks > 0.99 and presence < landmarks - 0.05
