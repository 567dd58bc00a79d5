"""The static int8 pass's preparation of a graph (converters/int8_static.py): a [1, N] bias
becomes [N] where that broadcasts identically, so onnxruntime's QDQ quantizer can take it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from converters.int8_static import one_dimensional_biases

RNG = np.random.default_rng(0)


def _model(path: Path, op: str) -> Path:
    w = numpy_helper.from_array(RNG.standard_normal((4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.standard_normal((1, 3)).astype(np.float32), "b")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
    if op == "Gemm":
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"])]
    else:
        nodes = [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["y"]),
        ]
    graph = helper.make_graph(nodes, "g", [x], [y], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def test_a_row_bias_becomes_one_dimensional_and_the_values_stay(tmp_path: Path) -> None:
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    for op in ("Gemm", "MatMul"):
        source = _model(tmp_path / f"{op}.onnx", op)
        prepared = one_dimensional_biases(source, tmp_path)
        assert prepared != source
        bias = {i.name: list(i.dims) for i in onnx.load(prepared).graph.initializer}["b"]
        assert bias == [3]
        np.testing.assert_array_equal(_run(prepared, x), _run(source, x))


def test_a_graph_without_row_biases_is_left_alone(tmp_path: Path) -> None:
    source = _model(tmp_path / "m.onnx", "MatMul")
    once = one_dimensional_biases(source, tmp_path)
    assert one_dimensional_biases(once, tmp_path) == once
