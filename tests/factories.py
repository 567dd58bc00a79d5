"""Models made in the tests, for cases the committed examples do not cover."""

from __future__ import annotations

from pathlib import Path


def make_old_opset_cnn(path: Path, opset: int = 11) -> Path:
    """A small CNN written the way older exporters wrote them (opset 11, fixed batch of 1),
    to prove the opset pass upgrades what per-channel quantization needs."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 1, 3, 3)).astype(np.float32) * 0.5, "w1"),
        numpy_helper.from_array(np.zeros(16, np.float32), "b1"),
        numpy_helper.from_array(
            rng.standard_normal((10, 16 * 8 * 8)).astype(np.float32) * 0.05, "w2"
        ),
        numpy_helper.from_array(np.zeros(10, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Flatten", ["r1"], ["f1"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "old_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
