"""Conversion passes (host only). One module per pass, each registered by name in ``registry``;
a hardware profile's runtime and precisions pick a recipe, a recipe names its passes
(``recipes``). TFLite passes import TensorFlow and onnx2tf only when they run."""

# Importing the pass modules registers them.
from converters import fp16, int8_dynamic, int8_static, onnx2tf_pass, opset, optimize, tflite
from converters.registry import PASSES, ConversionPass, PassContext, get_pass, register

__all__ = [
    "PASSES",
    "ConversionPass",
    "PassContext",
    "fp16",
    "get_pass",
    "int8_dynamic",
    "int8_static",
    "onnx2tf_pass",
    "opset",
    "optimize",
    "register",
    "tflite",
]
