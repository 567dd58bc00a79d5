"""Conversion passes (host only). One module per pass, each registered by name in ``registry``;
a hardware profile's precisions pick a recipe, a recipe names its passes (see ``recipes``)."""

from converters.registry import PASSES, ConversionPass, PassContext, get_pass, register

# Importing the pass modules registers them.
from converters import fp16, int8_dynamic, int8_static, opset, optimize  # noqa: E402, I001

__all__ = ["PASSES", "ConversionPass", "PassContext", "fp16", "get_pass", "int8_dynamic",
           "int8_static", "opset", "optimize", "register"]
