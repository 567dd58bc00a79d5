"""Each conversion pass on the real digits model, with real onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters import PASSES, PassContext, get_pass
from converters.opset import model_opset
from converters.sensitivity import rank_sensitive_nodes
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.errors import BuildError
from testing.factories import make_old_opset_cnn


@pytest.fixture(scope="module")
def calibration(digits: Path) -> dict[str, np.ndarray]:
    with np.load(digits / "calibration.npz") as npz:
        return {"input": npz["input"][:32]}


def _ctx(
    tmp_path: Path,
    calibration: dict[str, np.ndarray],
    profile: str = "x86-64-vnni",
    **options: object,
) -> PassContext:
    return PassContext(resolve_profile(profile), tmp_path, calibration, options)


@pytest.fixture(scope="module")
def prepared(
    digits: Path, tmp_path_factory: pytest.TempPathFactory, calibration: dict[str, np.ndarray]
) -> Path:
    work = tmp_path_factory.mktemp("prepared")
    ctx = PassContext(resolve_profile("x86-64-vnni"), work, calibration, {})
    get_pass("opset")(digits / "model.onnx", work / "a.onnx", ctx)
    get_pass("optimize")(work / "a.onnx", work / "b.onnx", ctx)
    return work / "b.onnx"


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_registry_knows_every_pass() -> None:
    assert {"opset", "optimize", "fp16", "int8_dynamic", "int8_static"} <= set(PASSES)
    with pytest.raises(BuildError, match="no conversion pass named 'int3'"):
        get_pass("int3")


def test_opset_pass_upgrades_an_old_model(
    tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    old = make_old_opset_cnn(tmp_path / "old.onnx", opset=11)
    assert model_opset(onnx.load(str(old))) == 11
    get_pass("opset")(old, tmp_path / "new.onnx", _ctx(tmp_path, calibration))
    assert model_opset(onnx.load(str(tmp_path / "new.onnx"))) == 17


def test_fp16_keeps_float32_io(
    prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    out = tmp_path / "fp16.onnx"
    get_pass("fp16")(prepared, out, _ctx(tmp_path, calibration))
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_int8_dynamic(prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]) -> None:
    out = tmp_path / "dyn.onnx"
    get_pass("int8_dynamic")(prepared, out, _ctx(tmp_path, calibration))
    assert {"DynamicQuantizeLinear"} <= _ops(out) or "MatMulInteger" in _ops(out)


def _zero_points(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        n.input[2]: inits[n.input[2]]
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits
    }


def test_int8_static_symmetric_for_tensorrt(
    prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    out = tmp_path / "qdq.onnx"
    get_pass("int8_static")(prepared, out, _ctx(tmp_path, calibration, "jetson-orin"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(out)
    zps = _zero_points(out)
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps.values())
    # Per-channel weights: some DequantizeLinear carries a scale vector, not a scalar.
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert any(
        inits.get(n.input[1], np.zeros(())).size > 1
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
    )


def test_int8_static_asymmetric_uint8_for_vnni(
    prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    out = tmp_path / "qdq.onnx"
    get_pass("int8_static")(
        prepared, out, _ctx(tmp_path, calibration, "x86-64-vnni", calibration_method="percentile")
    )
    zps = _zero_points(out)
    assert zps and all(z.dtype == np.uint8 for z in zps.values())


def test_calibration_methods_give_different_ranges(
    prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    # onnxruntime's entropy calibrator, left at its defaults (128 bins, 128 quantized bins), has
    # one threshold to try, the full range: "entropy" was "minmax" byte for byte.
    artifacts = {}
    for method in ("minmax", "entropy", "percentile"):
        out = tmp_path / f"{method}.onnx"
        get_pass("int8_static")(
            prepared, out, _ctx(tmp_path, calibration, calibration_method=method)
        )
        artifacts[method] = out.read_bytes()
    assert len(set(artifacts.values())) == 3


def test_percentile_from_the_entropy_histograms_is_its_own_calibration(
    prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    """After entropy, the percentile ranges come from the same histograms, without a second
    pass over the data: the same ranges and the same artifact as percentile on its own."""
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    shared.mkdir()
    alone.mkdir()
    get_pass("int8_static")(
        prepared, shared / "e.onnx", _ctx(shared, calibration, calibration_method="entropy")
    )
    written = sorted(p.name for p in shared.glob("ranges-percentile-*.json"))
    assert len(written) == 1  # no model run yet for percentile, its ranges are there
    get_pass("int8_static")(
        prepared, shared / "p.onnx", _ctx(shared, calibration, calibration_method="percentile")
    )
    get_pass("int8_static")(
        prepared, alone / "p.onnx", _ctx(alone, calibration, calibration_method="percentile")
    )
    assert [p.name for p in alone.glob("ranges-percentile-*.json")] == written
    assert (shared / written[0]).read_bytes() == (alone / written[0]).read_bytes()
    assert (shared / "p.onnx").read_bytes() == (alone / "p.onnx").read_bytes()
    # Symmetric activations histogram absolute values for percentile: no sharing there.
    orin = tmp_path / "orin"
    orin.mkdir()
    get_pass("int8_static")(
        prepared,
        orin / "e.onnx",
        _ctx(orin, calibration, "jetson-orin", calibration_method="entropy"),
    )
    assert not list(orin.glob("ranges-percentile-*.json"))


def test_minmax_ranges_are_onnxruntimes_own(
    prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    """The ranges we calibrate (once per method per build) are the ones quantize_static would."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from converters.calibration import ArrayDataReader

    ours = tmp_path / "ours.onnx"
    get_pass("int8_static")(prepared, ours, _ctx(tmp_path, calibration))
    stock = tmp_path / "stock.onnx"
    quantize_static(
        str(prepared),
        str(stock),
        ArrayDataReader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    assert ours.read_bytes() == stock.read_bytes()


def test_int8_static_qoperator_form(
    prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    out = tmp_path / "qop.onnx"
    get_pass("int8_static")(prepared, out, _ctx(tmp_path, calibration, quant_format="qoperator"))
    assert "QLinearConv" in _ops(out) and "DequantizeLinear" in _ops(out)


def test_float_op_and_head_nodes(prepared: Path) -> None:
    from converters.sensitivity import float_op_nodes, head_nodes

    graph = onnx.load(str(prepared)).graph
    kinds = {n.name: n.op_type for n in graph.node}
    heads = head_nodes(prepared)
    weighted = [n.name for n in graph.node if n.op_type in {"Conv", "Gemm", "MatMul"}]
    assert heads == [weighted[0], weighted[-1]]  # first convolution, then the classifier
    assert all(kinds[n] == "Relu" for n in float_op_nodes(prepared, ("Relu",)))
    assert float_op_nodes(prepared, ("depthwise",)) == []  # digits has no depthwise conv


def test_sensitivity_ranks_weighted_layers_and_exclusion_keeps_them_float(
    prepared: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    qdq = tmp_path / "qdq.onnx"
    get_pass("int8_static")(prepared, qdq, _ctx(tmp_path, calibration))
    ranked = rank_sensitive_nodes(prepared, qdq, calibration, tmp_path, samples=8)
    nodes = {n.name: n.op_type for n in onnx.load(str(prepared)).graph.node}
    weighted = [name for name, _ in ranked if nodes[name] in {"Conv", "Gemm", "MatMul"}]
    assert len(weighted) == 5  # 3 convolutions and 2 fully connected layers
    # Anything else ranked is a quantized op that lost SQNR (a Relu fused into its layer is
    # measured as that layer, not again).
    assert all(s > 0 for name, s in ranked if name not in weighted)
    assert not any(nodes[name] == "Relu" for name, _ in ranked)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    worst = ranked[0][0]
    mixed = tmp_path / "mixed.onnx"
    get_pass("int8_static")(prepared, mixed, _ctx(tmp_path, calibration, nodes_to_exclude=[worst]))
    graph = onnx.load(str(mixed)).graph
    producers = {o: n for n in graph.node for o in n.output}
    kept = next(n for n in graph.node if n.name == worst)
    # The excluded node's weight comes straight from a float initializer, not a DequantizeLinear.
    weight_producer = producers.get(kept.input[1])
    assert weight_producer is None or weight_producer.op_type != "DequantizeLinear"


def test_pass_failure_is_one_line_build_error(
    tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00\x01garbage")
    with pytest.raises(BuildError, match="pass 'fp16' failed") as info:
        get_pass("fp16")(broken, tmp_path / "o.onnx", _ctx(tmp_path, calibration))
    assert "\n" not in str(info.value)


def test_opset_that_cannot_go_down_says_to_re_export(
    digits: Path, tmp_path: Path, calibration: dict[str, np.ndarray]
) -> None:
    profile = resolve_profile("x86-64")
    from dataclasses import replace

    ctx = PassContext(replace(profile, opset=12), tmp_path, calibration, {})
    with pytest.raises(
        BuildError, match=r"uses opset 17 .* re-export the model with opset_version=12"
    ):
        get_pass("opset")(digits / "model.onnx", tmp_path / "o.onnx", ctx)
