"""onnx2tf's fallback routes: the shape no-op folding (pure graph work, fast), and the issue's
example end to end: PP-OCR's MobileNetV3-style classifier, exported at opset 11, for
raspberry-pi-4, where plain onnx2tf fails on the Softmax the version converter wraps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import corpus
from converters.onnx2tf_pass import ROUTES, fold_shape_noops, tf_safe_names


def _softmax_wrapped(path: Path) -> None:
    """What onnx's version converter makes of an opset-11 Softmax on [1, 2] logits."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 1])
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], "flatten", axis=1),
        helper.make_node("Softmax", ["flat"], ["soft"], "softmax", axis=-1),
        helper.make_node("Shape", ["x"], ["shape"], "shape"),
        helper.make_node("Reshape", ["soft", "shape"], ["y"], "back"),
        helper.make_node("Reshape", ["soft", "two_one"], ["z"], "real_reshape"),
    ]
    two_one = helper.make_tensor("two_one", TensorProto.INT64, [2], [2, 1])
    graph = helper.make_graph(nodes, "g", [x], [y, z], initializer=[two_one])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_fold_shape_noops_turns_identity_flatten_and_reshape_into_identity(
    tmp_path: Path,
) -> None:
    import onnxruntime as ort

    path = tmp_path / "m.onnx"
    _softmax_wrapped(path)
    x = np.array([[1.0, 3.0]], np.float32)
    before = ort.InferenceSession(str(path)).run(None, {"x": x})
    # Flatten of a 2-D tensor, and the Reshape back to Shape(x): both leave [1, 2] as it is.
    assert fold_shape_noops(path) == 2
    ops = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    assert ops["flatten"] == ops["back"] == "Identity"
    assert ops["real_reshape"] == "Reshape"  # [1, 2] -> [2, 1] is a real reshape
    after = ort.InferenceSession(str(path)).run(None, {"x": x})
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert fold_shape_noops(path) == 0  # nothing left to fold


def test_node_names_made_tf_safe(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _softmax_wrapped(path)
    model = onnx.load(str(path))
    model.graph.node[1].name = "Softmax@0"  # as Paddle exports name their nodes
    model.graph.node[2].name = "Softmax_0"  # a clash the rename must avoid
    onnx.save(model, str(path))
    assert tf_safe_names(path) == 1
    names = [n.name for n in onnx.load(str(path)).graph.node]
    assert names[1] == "nSoftmax_0" and len(set(names)) == len(names)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["y", "z"]  # I/O untouched
    assert tf_safe_names(path) == 0


def test_routes_are_ordered_plain_first() -> None:
    assert ROUTES[0] == ("onnx2tf", False, {})
    assert all(fold for _, fold, _ in ROUTES[1:])


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("onnx2tf") is None, reason="tflite extra not installed"
)
def test_mobilenet_style_classifier_builds_for_raspberry_pi_4(tmp_path: Path) -> None:
    from edge_sdk.build.pipeline import BuildRequest, build
    from edge_sdk.core.profiles import resolve_profile

    m = corpus.get("ppocr-cls")
    r = build(
        BuildRequest(
            model=m.path(),
            profile=resolve_profile("raspberry-pi-4"),
            out=tmp_path / "out",
            calibration=m.write(tmp_path / "cal.npz", 32, 0),
            validation=m.write(tmp_path / "val.npz", 32, 1),
            name="ppocr-cls",
            timing_seconds=0.2,
        )
    ).report
    routes = [line for line in r["routes"] if line.startswith("tflite, ")]
    assert routes[-1].endswith(": converted")
    assert all(": failed: " in line for line in routes[:-1])
    assert r["runtime"] == "tflite"
    assert r["fidelity"]["cosine"] >= 0.99
