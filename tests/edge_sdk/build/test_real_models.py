"""A model someone else trained and shipped: YOLOv8n (nudenet's 320n.onnx), exported with dynamic
batch, height and width, built for an ONNX and a TFLite profile with real photographs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_sdk.build.pipeline import BuildRequest, build
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.profiles import resolve_profile
from testing.factories import photo_crops, yolov8n_path
from tests.contract import int8_by_the_rule


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("photos")
    return photo_crops(work / "cal.npz", 32, seed=0), photo_crops(work / "val.npz", 16, seed=1)


def _build(profile: str, photos: tuple[Path, Path], out: Path) -> dict[str, Any]:
    calibration, validation = photos
    return build(
        BuildRequest(
            model=yolov8n_path(),
            profile=resolve_profile(profile),
            out=out,
            calibration=calibration,
            validation=validation,
            name="yolov8n",
            timing_seconds=0.5,
        )
    ).report


def test_yolov8n_for_x86_vnni(
    photos: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Symbolic shape inference is incomplete on this graph, and onnxruntime then dumps debug
    # copies of the model into the working directory: the build must keep them out of it.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    r = _build("x86-64-vnni", photos, tmp_path / "out")
    assert list(cwd.iterdir()) == []
    assert r["inputs"][0]["shape"] == ["batch", 3, 320, 320]  # fixed from the data
    int8 = int8_by_the_rule(r, "int8_static")
    assert int8["fidelity"]["top1_agreement"] is None  # detections, not class scores
    assert int8["fidelity"]["cosine"] >= 0.998  # minmax calibration measures 0.9981
    assert r["source_bytes"] / int8["artifact_bytes"] >= 3.4
    (dynamic,) = [c for c in r["candidates"] if c["precision"] == "int8_dynamic"]
    if r["timed_on_stand_in"]:  # a host with VNNI: its timings decide, and catch dynamic int8
        assert dynamic["reason"].startswith("slower than the float model")
    else:  # a host without: the profile's order decides, and int8_static comes first
        assert dynamic["reason"] == f"inside budget, but {int8['name']} comes first in the order"


def test_yolov8n_for_raspberry_pi_5(photos: tuple[Path, Path], tmp_path: Path) -> None:
    r = _build("raspberry-pi-5", photos, tmp_path)
    assert r["runtime"] == "tflite"
    int8 = int8_by_the_rule(r, "int8_full")
    assert int8["fidelity"]["cosine"] >= 0.998
    assert r["source_bytes"] / int8["artifact_bytes"] >= 3.5
    m = read_bundle(Path(r["bundle"])).manifest
    (images,) = m.artifact_tensors["inputs"]
    assert images["layout"] == "NHWC" and images["shape"] == [1, 320, 320, 3]
