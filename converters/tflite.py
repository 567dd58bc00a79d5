"""SavedModel to .tflite with TensorFlow's own TFLiteConverter, one registered pass per recipe.

Full-integer recipes calibrate on the build's calibration data (transposed to the SavedModel's
NHWC inputs) and allow integer builtins only, so an op that cannot be quantized fails the build
by name instead of silently running in float on an accelerator that has no float unit.
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, absl banners) is not the user's business.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from converters.registry import PassContext, failure, register
from edge_sdk.errors import BuildError


def _converter(source: Path) -> Any:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(source))


def _representative(
    source: Path, context: PassContext
) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """Calibration samples keyed by the SavedModel's input names, in its layout: onnx2tf's
    SavedModels are NHWC where the ONNX data was NCHW; Keras sources are NHWC already."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(source)).signatures["serving_default"]
    _, specs = signature.structured_input_signature
    arrays = {
        name: _in_layout(np.asarray(context.calibration[name]), spec.shape)
        for name, spec in specs.items()
    }
    count = len(next(iter(arrays.values())))
    limit = min(count, context.profile.quantization.calibration_samples)

    def samples() -> Iterator[dict[str, np.ndarray]]:
        for i in range(limit):
            yield {name: a[i : i + 1].astype(np.float32) for name, a in arrays.items()}

    return samples


def _in_layout(array: np.ndarray, shape: Any) -> np.ndarray:
    want = list(shape)[1:]
    if array.ndim == 4 and list(array.shape[1:]) != want:
        moved = array.transpose(0, 2, 3, 1)
        if all(w is None or w == h for w, h in zip(want, moved.shape[1:], strict=True)):
            return moved
    return array


def _write(converter: Any, target: Path, name: str) -> None:
    try:
        target.write_bytes(converter.convert())
    except Exception as e:
        message = str(e)
        op = re.search(
            r"'?(tfl\.[a-z_0-9]+|[A-Z][A-Za-z0-9]+)'? (op )?(is neither|is not supported|"
            r"can't be quantized|cannot be quantized)",
            message,
        )
        if op:
            raise BuildError(
                f"pass '{name}' failed: op {op.group(1)} cannot run as full integer; this profile "
                "needs every op quantized (replace the op, or use a profile with float fallback)"
            ) from e
        raise failure(name, e) from e


@register("tflite_fp32")
def tflite_fp32(source: Path, target: Path, context: PassContext) -> None:
    _write(_converter(source), target, "tflite_fp32")


@register("tflite_fp16")
def tflite_fp16(source: Path, target: Path, context: PassContext) -> None:
    import tensorflow as tf

    converter = _converter(source)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    _write(converter, target, "tflite_fp16")


@register("tflite_int8_dynamic")
def tflite_int8_dynamic(source: Path, target: Path, context: PassContext) -> None:
    import tensorflow as tf

    converter = _converter(source)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    _write(converter, target, "tflite_int8_dynamic")


@register("tflite_int8_full")
def tflite_int8_full(source: Path, target: Path, context: PassContext) -> None:
    import tensorflow as tf

    converter = _converter(source)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(source, context)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8}
    converter.inference_input_type = io_type[context.profile.quantization.io_type]
    converter.inference_output_type = io_type[context.profile.quantization.io_type]
    _write(converter, target, "tflite_int8_full")
    float_ops = float_compute_ops(target.read_bytes())
    if float_ops:
        # TFLiteConverter keeps an op it cannot quantize in float between DEQUANTIZE and
        # QUANTIZE even with integer builtins only; an Edge TPU cannot run such a model.
        raise BuildError(
            f"pass 'tflite_int8_full' failed: op {', '.join(float_ops)} cannot run as full "
            f"integer, and profile {context.profile.id} needs every op quantized; replace the op "
            "or use a profile that allows float fallback"
        )


def float_compute_ops(model: bytes) -> list[str]:
    """Ops of a .tflite model that compute in float (QUANTIZE/DEQUANTIZE at the edges aside)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    tensors = interpreter.get_tensor_details()
    found = []
    # _get_ops_details is LiteRT's only per-op view; the public API lists tensors, not ops.
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(i >= 0 and tensors[i]["dtype"] == np.float32 for i in op["inputs"]):
            found.append(str(op["op_name"]))
    return sorted(set(found))
