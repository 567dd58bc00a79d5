"""TFLite profiles end to end: onnx2tf + TFLiteConverter + LiteRT, with the network cut off."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_sdk.build.pipeline import BuildRequest, build
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.runtime import evaluate, load_bundle
from tests.contract import int8_by_the_rule

TFLITE_PROFILES = ("raspberry-pi-4", "raspberry-pi-5", "coral-edgetpu")


@pytest.fixture(scope="module")
def no_network() -> Iterator[None]:
    """Any attempt to open a connection fails loudly, as it would on an air-gapped build host."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during a build")

    saved = socket.socket.connect, socket.create_connection
    socket.socket.connect = refuse  # type: ignore[method-assign, assignment]
    socket.create_connection = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection = saved  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def tflite_builds(
    no_network: None, digits: Path, signing_keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("tflite")
    reports = {}
    for profile in TFLITE_PROFILES:
        reports[profile] = build(
            BuildRequest(
                model=digits / "model.onnx",
                profile=resolve_profile(profile),
                out=out,
                calibration=digits / "calibration.npz",
                validation=digits / "validation.npz",
                keys=(signing_keys / "online-1.key",),
                timing_seconds=0.3,
            )
        ).report
    return reports


@pytest.mark.parametrize("profile", TFLITE_PROFILES)
def test_digits_full_integer_keeps_accuracy(
    tflite_builds: dict[str, dict[str, Any]], profile: str
) -> None:
    r = tflite_builds[profile]
    assert r["runtime"] == "tflite"
    if resolve_profile(profile).second_runtime is not None:
        # The Raspberry Pi's second runtime is built and measured too, and comes after TFLite
        # in the order: both work here, and TFLite is chosen.
        onnx = [c for c in r["candidates"] if c["runtime"] == "onnx"]
        assert onnx and all(c["name"].startswith("onnx:") for c in onnx)
        assert any(c["fidelity"] is not None for c in onnx) and not any(c["chosen"] for c in onnx)
        assert any(line.startswith("onnx (second runtime): ") for line in r["routes"])
    int8 = int8_by_the_rule(r, "int8_full")
    assert r["source_accuracy"] - int8["accuracy"] <= 0.005
    assert int8["fidelity"]["top1_agreement"] >= 0.99
    assert r["source_bytes"] / int8["artifact_bytes"] >= 3.5
    assert Path(r["bundle"]).read_bytes()[:2] == b"PK"


@pytest.mark.parametrize(
    ("profile", "io_dtype"),
    [("raspberry-pi-4", "float32"), ("coral-edgetpu", "uint8")],
)
def test_manifest_records_real_layout_dtype_and_quantization(
    tflite_builds: dict[str, dict[str, Any]], profile: str, io_dtype: str
) -> None:
    m = read_bundle(Path(tflite_builds[profile]["bundle"])).manifest
    assert m.artifact == "model.tflite"
    (tensor,) = m.artifact_tensors["inputs"]
    assert tensor["layout"] == "NHWC" and tensor["shape"][1:] == [8, 8, 1]
    assert tensor["dtype"] == io_dtype
    if io_dtype == "uint8":
        assert tensor["quantization"]["scale"] > 0
        assert m.artifact_tensors["outputs"][0]["dtype"] == "uint8"
    assert m.inputs[0].layout == "NCHW"  # callers keep speaking the source's layout


def test_one_runtime_api_runs_tflite_like_onnx(
    tflite_builds: dict[str, dict[str, Any]], digits: Path
) -> None:
    """Floats in NCHW in, floats out, whatever the artifact's own layout and dtypes are."""
    with np.load(digits / "validation.npz") as v:
        x, labels = v["input"], v["labels"]
    for profile in ("coral-edgetpu", "raspberry-pi-5"):
        model = load_bundle(read_bundle(Path(tflite_builds[profile]["bundle"])), threads=2)
        (logits,) = evaluate(model, {"input": x})
        assert logits.dtype == np.float32 and logits.shape == (len(x), 10)
        assert np.mean(logits.argmax(1) == labels) >= 0.98


def test_agent_selftest_passes_on_a_tflite_bundle(
    tflite_builds: dict[str, dict[str, Any]], signing_keys: Path
) -> None:
    from agent.update.selftest import self_test

    result = self_test(Path(tflite_builds["coral-edgetpu"]["bundle"]), signing_keys / "root.json")
    assert result.golden.passed, result.golden.detail


def test_coral_refuses_an_op_it_cannot_quantize_naming_it(
    no_network: None, digits: Path, tmp_path: Path
) -> None:
    from edge_sdk.errors import BudgetError
    from testing.factories import make_sin_model

    model = make_sin_model(tmp_path / "sin.onnx")
    out = tmp_path / "out"
    with pytest.raises(BudgetError, match=r"could be built .*op SIN cannot run as full integer"):
        build(
            BuildRequest(
                model=model,
                profile=resolve_profile("coral-edgetpu"),
                out=out,
                calibration=digits / "calibration.npz",
            )
        )
    assert list(out.iterdir()) == []


def test_installed_version_directory_opens_like_the_bundle(
    tflite_builds: dict[str, dict[str, Any]], digits: Path, tmp_path: Path
) -> None:
    import zipfile

    from edge_sdk.runtime import open_model

    bundle = Path(tflite_builds["raspberry-pi-4"]["bundle"])
    installed = tmp_path / "v1"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(installed)
    with np.load(digits / "validation.npz") as v:
        x = v["input"][:16]
    (from_dir,) = evaluate(open_model(installed, threads=1), {"input": x})
    (from_file,) = evaluate(open_model(bundle, threads=1), {"input": x})
    np.testing.assert_array_equal(from_dir, from_file)


def test_every_tflite_recipe_builds_and_is_measured(
    no_network: None, digits: Path, tmp_path: Path
) -> None:
    from edge_sdk.core.profiles import builtin_profile_dir, load_profile_file

    text = (builtin_profile_dir() / "raspberry-pi-4.toml").read_text()
    text = text.replace(
        'precisions = ["int8_full", "fp32"]',
        'precisions = ["int8_full", "int8_dynamic", "fp16", "fp32"]',
    )
    path = tmp_path / "all-recipes.toml"
    path.write_text(text.replace('id = "raspberry-pi-4"', 'id = "all-recipes"'))
    r = build(
        BuildRequest(
            model=digits / "model.onnx",
            profile=load_profile_file(path),
            out=tmp_path / "out",
            calibration=digits / "calibration.npz",
            validation=digits / "validation.npz",
            timing_seconds=0.3,
        )
    ).report
    by_precision = {c["precision"]: c for c in r["candidates"] if c["runtime"] == "tflite"}
    assert set(by_precision) == {"int8_full", "int8_dynamic", "fp16", "fp32"}
    for c in by_precision.values():
        assert c["error"] is None and c["fidelity"]["top1_agreement"] >= 0.99
    assert by_precision["fp16"]["artifact_bytes"] < by_precision["fp32"]["artifact_bytes"] * 0.6
