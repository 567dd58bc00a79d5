"""The build pipeline end to end with real onnxruntime, on the committed example models."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edge_sdk.build.pipeline import BuildRequest, build
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.profiles import builtin_profile_dir, load_profile_file, resolve_profile
from testing.factories import make_old_opset_cnn
from tests.contract import BUILD_REPORT_KEYS


def _build(tmp_path: Path, model: Path, profile: str | Path, **kw: Any) -> dict[str, Any]:
    prof = load_profile_file(profile) if isinstance(profile, Path) else resolve_profile(profile)
    request = BuildRequest(
        model=model, profile=prof, out=tmp_path / "out", timing_seconds=0.3, **kw
    )
    return build(request).report


def test_digits_for_x86_vnni_is_int8_faster_smaller_and_as_accurate(
    digits_build: dict[str, Any],
) -> None:
    r = digits_build
    assert set(r) >= BUILD_REPORT_KEYS
    assert {"p50", "p95"} <= set(r["latency_ms"]) and {"p50", "p95"} <= set(r["source_latency_ms"])
    assert {"top1_agreement", "cosine", "max_abs_error"} <= set(r["fidelity"])
    assert r["precision"] == "int8_static"
    assert r["source_bytes"] / r["artifact_bytes"] >= 3.5
    assert r["latency_ms"]["p50"] < r["source_latency_ms"]["p50"]
    assert r["source_accuracy"] - r["accuracy"] <= 0.005
    assert r["fidelity"]["top1_agreement"] >= 0.99
    assert r["signed"] is True
    chosen = [c for c in r["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["precision"] == "int8_static"
    for c in r["candidates"]:
        assert c["reason"] and {"recipe", "latency_ms", "fidelity", "artifact_bytes"} <= set(c)


def test_dynamic_int8_convolutions_are_caught_by_measurement(digits_build: dict[str, Any]) -> None:
    # The profile lists int8_dynamic; on a CNN it is far slower than float: only timing shows it.
    (dynamic,) = [c for c in digits_build["candidates"] if c["precision"] == "int8_dynamic"]
    assert not dynamic["chosen"]
    assert dynamic["latency_ms"]["p50"] > digits_build["source_latency_ms"]["p50"]
    if digits_build["timed_on_stand_in"]:  # a host with VNNI: its timings decide
        assert dynamic["reason"].startswith("slower than the float model")
    else:  # a host without: the profile's order decides, and int8_static comes first
        assert dynamic["reason"].startswith("inside budget, but int8_static")


def test_bundle_holds_everything_the_device_needs(digits_build: dict[str, Any]) -> None:
    b = read_bundle(Path(digits_build["bundle"]))
    m = b.manifest
    assert (m.name, m.version, m.profile, m.precision) == ("model", 1, "x86-64-vnni", "int8_static")
    assert m.inputs[0].name == "input" and m.inputs[0].layout == "NCHW"
    assert m.outputs[0].name == "logits"
    assert m.artifact_bytes == len(b.artifact) == digits_build["artifact_bytes"]
    assert m.golden.count == 8 and m.golden.atol > 0
    assert m.report["candidates"] and b.signatures is not None
    assert list(Path(digits_build["bundle"]).parent.iterdir()) == [Path(digits_build["bundle"])]


def test_next_build_gets_the_next_version(tmp_path: Path, digits: Path) -> None:
    first = _build(tmp_path, digits / "model.onnx", "x86-64", validation=digits / "validation.npz")
    second = _build(tmp_path, digits / "model.onnx", "x86-64", validation=digits / "validation.npz")
    assert (first["version"], second["version"]) == (1, 2)
    assert Path(second["bundle"]).name == "model-v2-x86-64.edgebundle"


def test_jetson_orin_is_symmetric_int8_qdq(tmp_path: Path, digits: Path) -> None:
    r = _build(
        tmp_path,
        digits / "model.onnx",
        "jetson-orin",
        calibration=digits / "calibration.npz",
        validation=digits / "validation.npz",
    )
    assert r["precision"] == "int8_static"
    model = onnx.load_from_string(read_bundle(Path(r["bundle"])).artifact)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [
        inits[n.input[2]]
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[2] in inits
    ]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    # TensorRT takes biases in float: no int32 bias DequantizeLinear.
    assert not any(n.name.endswith("bias_DequantizeLinear") for n in model.graph.node)
    assert "precision order" in next(c for c in r["candidates"] if c["chosen"])["reason"]


def test_jetson_nano_ships_fp16(tmp_path: Path, digits: Path) -> None:
    r = _build(tmp_path, digits / "model.onnx", "jetson-nano", validation=digits / "validation.npz")
    assert r["precision"] == "fp16"
    model = onnx.load_from_string(read_bundle(Path(r["bundle"])).artifact)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_budget_breach_tries_every_calibration_method_then_mixed_precision(
    tmp_path: Path, digits: Path
) -> None:
    strict = (builtin_profile_dir() / "x86-64-vnni.toml").read_text()
    strict = strict.replace("min_cosine = 0.99", "min_cosine = 0.9999999")
    path = tmp_path / "strict.toml"
    path.write_text(strict.replace('id = "x86-64-vnni"', 'id = "strict"'))
    r = _build(
        tmp_path,
        digits / "model.onnx",
        path,
        calibration=digits / "calibration.npz",
        validation=digits / "validation.npz",
    )
    names = [c["name"] for c in r["candidates"]]
    assert names[:4] == [
        "int8_static-minmax",
        "int8_static-minmax-per-tensor",
        "int8_static-entropy",
        "int8_static-percentile",
    ]
    mixed = [c for c in r["candidates"] if c["name"].startswith("int8_mixed-")]
    assert mixed and mixed[0]["recipe"]["nodes_to_exclude"]
    assert all(note.startswith("kept in float (") for c in mixed for note in c["notes"])
    # Before mixed precision by measured damage: op types int8 hurts, the first conv and the
    # head in float, then depthwise convolutions too; each step keeps a superset in float.
    kept = [
        set(c["recipe"].get("nodes_to_exclude", ()))
        for c in r["candidates"]
        if c["name"].startswith(("int8_floatops", "int8_mixed-"))
    ]
    assert kept and all(a <= b for a, b in itertools.pairwise(kept))
    # int8 candidates carry both measurements and say which one judged them.
    assert all(c["judged_by"] in ("exact", "host") for c in r["candidates"][:4])
    # Nothing quantized holds a cosine that tight: float is what ships, and the report says why.
    assert r["precision"] == "fp32"
    assert all(
        "outside accuracy budget" in c["reason"]
        for c in r["candidates"]
        if c["precision"] != "fp32"
    )


def test_without_data_it_falls_back_to_synthetic_and_says_so(tmp_path: Path, digits: Path) -> None:
    r = _build(tmp_path, digits / "model.onnx", "x86-64-vnni")
    assert r["calibration"]["synthetic"] and r["validation"]["synthetic"]
    assert any("synthetic" in note and "unproven" in note for note in r["notes"])
    assert r["accuracy"] is None and r["source_accuracy"] is None


def test_old_opset_fixed_batch_model_is_upgraded(tmp_path: Path) -> None:
    model = make_old_opset_cnn(tmp_path / "old.onnx", opset=11)
    r = _build(tmp_path, model, "jetson-orin")
    artifact = onnx.load_from_string(read_bundle(Path(r["bundle"])).artifact)
    assert next(o.version for o in artifact.opset_import if o.domain in ("", "ai.onnx")) == 17
    # The upgraded graph quantizes: int8 candidates are built and measured. Judged in exact
    # QDQ arithmetic (the target is TensorRT), this synthetic CNN's tiny logit margins flip 3%
    # of top-1 answers, over the 1% budget, so the profile's next precision is chosen.
    int8 = [c for c in r["candidates"] if c["precision"] == "int8_static"]
    assert int8 and all(c["fidelity"]["cosine"] > 0.99 for c in int8)
    assert r["precision"] in ("int8_static", "fp16")


def test_signed_metadata_names_model_version_and_profile(digits_build: dict[str, Any]) -> None:
    from tuf.api.metadata import Metadata

    from edge_sdk.core.trust import signed_custom

    b = read_bundle(Path(digits_build["bundle"]))
    assert b.signatures is not None
    targets = Metadata.from_bytes(b.signatures).signed
    assert signed_custom(targets) == {
        "name": "model",
        "version": 1,
        "profile": "x86-64-vnni",
        "runtime": "onnx",
    }


def test_transformer_for_jetson_orin_survives_its_fp16_candidate(
    tmp_path: Path, transformer: Path
) -> None:
    """onnxruntime's level-"all" CPU optimizations segfault on this fp16 graph; the build must
    open fp16 candidates at the level the manifest then carries to the device."""
    r = _build(
        tmp_path,
        transformer / "model.onnx",
        "jetson-orin",
        calibration=transformer / "calibration.npz",
        validation=transformer / "validation.npz",
    )
    (fp16,) = [c for c in r["candidates"] if c["precision"] == "fp16"]
    assert fp16["error"] is None and fp16["fidelity"]["top1_agreement"] >= 0.99
    settings = read_bundle(Path(r["bundle"])).manifest.runtime_settings
    assert settings["providers"][0] == "TensorrtExecutionProvider"
    assert settings["graph_optimization_level"] == (
        "extended" if r["precision"] == "fp16" else "all"
    )


def test_transformer_for_x86_vnni_is_int8_and_at_least_as_fast(
    tmp_path: Path, transformer: Path
) -> None:
    r = _build(
        tmp_path,
        transformer / "model.onnx",
        "x86-64-vnni",
        calibration=transformer / "calibration.npz",
        validation=transformer / "validation.npz",
    )
    assert r["precision"] in ("int8_static", "int8_dynamic")
    assert r["source_bytes"] / r["artifact_bytes"] >= 3.5
    assert r["source_accuracy"] - r["accuracy"] <= 0.005
