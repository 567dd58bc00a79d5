"""Bring the model to the profile's opset: quantization needs at least 13 for per-channel QDQ,
and an older runtime on the device needs the graph no newer than it understands."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import version_converter

from converters.registry import PassContext, failure, register


def model_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


@register("opset")
def convert_opset(source: Path, target: Path, context: PassContext) -> None:
    model = onnx.load(str(source))
    want = context.profile.opset
    if model_opset(model) != want:
        try:
            model = version_converter.convert_version(model, want)
        except Exception as e:  # the converter raises plain RuntimeError per unsupported op
            raise failure("opset", e) from e
    onnx.save(model, str(target))
