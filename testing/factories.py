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


def make_dynamic_sequence_model(path: Path, features: int = 16) -> Path:
    """A MatMul model with a dynamic sequence length, as transformer exporters write them."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((features, 64)).astype(np.float32) * 0.2
    w2 = rng.standard_normal((64, 8)).astype(np.float32) * 0.2
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="proj"),
        helper.make_node("Relu", ["h"], ["hr"], name="act"),
        helper.make_node("ReduceMean", ["hr"], ["pooled"], axes=[1], keepdims=0, name="pool"),
        helper.make_node("MatMul", ["pooled", "w2"], ["scores"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "seq_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", features])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_sin_model(path: Path) -> Path:
    """A tiny image model with a Sin op: TFLite has no integer Sin kernel, so a full-integer
    recipe (Coral) cannot quantize it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(2).standard_normal((4, 1, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Sin", ["c"], ["s"], name="sin"),
        helper.make_node("GlobalAveragePool", ["s"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["logits"], axis=1, name="flatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "sin_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def yolov8n_path() -> Path:
    """YOLOv8n (320n.onnx), trained by someone else and shipped in the nudenet wheel; located
    without importing nudenet, whose own imports (OpenCV) the tests do not need."""
    import importlib.util

    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps -r constraints/tflite-nodeps.txt (nudenet)")
    return Path(next(iter(spec.submodule_search_locations))) / "320n.onnx"


def photo_crops(path: Path, count: int, size: int = 320, seed: int = 0) -> Path:
    """Real photographs for a detector: random crops of the two images scikit-learn ships,
    resized to ``size``, NCHW float32 in [0, 1], saved as an .npz keyed ``images``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(200, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size))
        crops.append(np.asarray(crop, np.float32).transpose(2, 0, 1) / 255.0)
    np.savez(path, images=np.stack(crops))
    return path
