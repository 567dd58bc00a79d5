"""The int8 search on a real third-party classifier (PP-OCR's MobileNetV3-style direction
classifier: depthwise convolutions, hard-swish, SE blocks, opset 11), built for x86-64-vnni as if
on a host without VNNI: fidelity is judged in the target's arithmetic, and the best int8
candidate is at least as faithful as onnxruntime's stock ``quantize_static`` on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import corpus
from edge_sdk.build.pipeline import BuildRequest, build
from edge_sdk.build.search import COSINE_NOISE
from edge_sdk.core.fidelity import compare
from edge_sdk.core.profiles import resolve_profile
from tests.contract import int8_by_the_rule

CAL, VAL = 64, 64


@pytest.fixture(scope="module")
def cls_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    m = corpus.get("ppocr-cls")
    work = tmp_path_factory.mktemp("cls-data")
    return m.write(work / "cal.npz", CAL, 0), m.write(work / "val.npz", VAL, 1)


@pytest.fixture(scope="module")
def no_vnni_build(
    cls_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    calibration, validation = cls_data
    return build(
        BuildRequest(
            model=corpus.get("ppocr-cls").path(),
            profile=resolve_profile("x86-64-vnni"),
            out=tmp_path_factory.mktemp("cls-out"),
            calibration=calibration,
            validation=validation,
            name="ppocr-cls",
            timing_seconds=0.3,
            host_kernels="x86-avx2",  # this host may have VNNI: stand for one without
        )
    ).report


def test_u8s8_per_channel_kept_for_vnni_target_on_a_host_without_vnni(
    no_vnni_build: dict[str, Any],
) -> None:
    r = no_vnni_build
    assert r["int8_arithmetic"] == {"target": "x86-vnni", "host": "x86-avx2", "judged_by": "exact"}
    int8 = int8_by_the_rule(r, "int8_static")  # kept: chosen, or out only for speed
    assert int8["judged_by"] == "exact"
    assert int8["fidelity"] == int8["exact_fidelity"]
    assert int8["exact_fidelity"]["cosine"] >= 0.99
    assert int8["exact_fidelity"]["top1_agreement"] >= 0.99
    # u8 activations, s8 per-channel weights: the profile's own recipe, no reduce_range.
    q = resolve_profile("x86-64-vnni").quantization
    assert (q.activation_type, q.weight_type, q.per_channel) == ("uint8", "int8", True)
    assert not int8["recipe"].get("reduce_range") and "quant_format" not in int8["recipe"]
    # No QOperator candidate: its integer kernels are this host's, which is not the target.
    assert not any(c["recipe"].get("quant_format") for c in r["candidates"])


def test_the_host_judges_when_it_is_the_targets_class(
    cls_data: tuple[Path, Path], tmp_path: Path
) -> None:
    calibration, validation = cls_data
    r = build(
        BuildRequest(
            model=corpus.get("ppocr-cls").path(),
            profile=resolve_profile("x86-64-vnni"),
            out=tmp_path,
            calibration=calibration,
            validation=validation,
            name="ppocr-cls",
            timing_seconds=0.2,
            host_kernels="x86-vnni",
        )
    ).report
    assert r["int8_arithmetic"]["judged_by"] == "host"
    qdq = [c for c in r["candidates"] if c["precision"] == "int8_static"]
    assert qdq[0]["judged_by"] == "host" and qdq[0]["fidelity"] == qdq[0]["host_fidelity"]
    assert qdq[0]["exact_fidelity"] is None  # not needed where the host is the target's class
    # Judged by the host: the QOperator form is tried and timed beside the QDQ one.
    assert any(c["recipe"].get("quant_format") == "qoperator" for c in qdq)


def _stock_outputs(source: Path, calibration: Path, validation: Path, work: Path) -> Any:
    """onnxruntime's documented recipe with its defaults, run as its user would (fused)."""
    import onnxruntime as ort
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from converters.calibration import ArrayDataReader

    prepared, stock = work / "prep.onnx", work / "stock.onnx"
    try:
        quant_pre_process(str(source), str(prepared))
    except Exception:  # symbolic shape inference fails on this graph: the documented retry
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    with np.load(calibration) as npz:
        cal = {k: npz[k] for k in npz.files if k != "labels"}
    quantize_static(str(prepared), str(stock), ArrayDataReader(cal))
    with np.load(validation) as npz:
        val = {k: npz[k] for k in npz.files if k != "labels"}

    def run(path: Path, level: ort.GraphOptimizationLevel) -> list[np.ndarray]:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        runs = [s.run(None, {k: v[i : i + 1] for k, v in val.items()}) for i in range(VAL)]
        return [np.concatenate([r[j] for r in runs]) for j in range(len(runs[0]))]

    reference = run(source, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return (
        compare(reference, run(stock, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)),
        compare(reference, run(stock, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)),
    )


def test_best_int8_at_least_as_faithful_as_onnxruntime_stock_recipe(
    no_vnni_build: dict[str, Any], cls_data: tuple[Path, Path], tmp_path: Path
) -> None:
    """On this model per-tensor weights (stock's default) simulate at cosine 0.99979 and the
    profile's per-channel ones at 0.99749 (the activation type makes no difference here); the
    search measures both, so its best is not below stock."""
    calibration, validation = cls_data
    exact, _ = _stock_outputs(corpus.get("ppocr-cls").path(), calibration, validation, tmp_path)
    ours = [c for c in no_vnni_build["candidates"] if c["precision"] == "int8_static"]
    best = max(c["exact_fidelity"]["cosine"] for c in ours if c["exact_fidelity"])
    names = [c["name"] for c in ours]
    assert names[:2] == ["int8_static-minmax", "int8_static-minmax-per-tensor"], names
    # In the arithmetic the build judged by (the target's): ours >= stock, within noise.
    assert best >= exact.cosine - COSINE_NOISE / 2, (best, exact)
    assert best >= 0.99  # the goal for classifiers


def test_silero_vad_int8_inside_the_budget_with_its_power_spectrum_in_float(
    tmp_path: Path,
) -> None:
    """Silero VAD (its wheel's model): every whole-graph int8 recipe moves the speech
    probability by 15-40 % (quiet bins of the STFT's power spectrum round to zero); the damage
    ranking finds that Add, and the mixed-precision step that keeps it (and the STFT's
    convolution) in float is inside the 0.99 budget."""
    m = corpus.get("silero-vad")
    r = build(
        BuildRequest(
            model=m.path(),
            profile=resolve_profile("x86-64-vnni"),
            out=tmp_path / "out",
            calibration=m.write(tmp_path / "cal.npz", 32, 0),
            validation=m.write(tmp_path / "val.npz", 32, 1),
            name="silero-vad",
            timing_seconds=0.2,
            host_kernels="x86-avx2",
        )
    ).report
    int8 = {c["name"]: c for c in r["candidates"] if c["precision"] == "int8_static"}
    whole = [c for name, c in int8.items() if name.startswith("int8_static-")]
    assert whole and all(c["fidelity"]["cosine"] < 0.9 for c in whole if c["fidelity"])
    mixed = [c for name, c in int8.items() if name.startswith("int8_mixed-")]
    assert mixed and all("/stft/Add" in c["notes"][0] for c in mixed), mixed
    assert mixed[0]["fidelity"]["cosine"] > 0.98  # the Add alone: 0.80 -> 0.986
    # This host stands in for no VNNI target, so the profile's order decides: int8 first.
    chosen = next(c for c in r["candidates"] if c["chosen"])
    assert chosen["name"].startswith("int8_mixed-") and chosen["fidelity"]["cosine"] >= 0.99
