"""Which passes make each precision, per runtime. The profile names a runtime and lists
precisions; this table turns them into the passes to run after the shared preparation."""

from __future__ import annotations

PREPARE: dict[str, tuple[str, ...]] = {
    "onnx": ("opset", "optimize"),
    "tflite": ("opset", "optimize", "onnx2tf"),
}

RECIPES: dict[str, dict[str, tuple[str, ...]]] = {
    "onnx": {
        "fp32": (),
        "fp16": ("fp16",),
        "int8_dynamic": ("int8_dynamic",),
        "int8_static": ("int8_static",),
    },
    "tflite": {
        "fp32": ("tflite_fp32",),
        "fp16": ("tflite_fp16",),
        "int8_dynamic": ("tflite_int8_dynamic",),
        "int8_full": ("tflite_int8_full",),
    },
}

ARTIFACT_SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}
