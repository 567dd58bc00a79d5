"""Bring the model to the profile's opset: quantization needs at least 13 for per-channel QDQ,
and an older runtime on the device needs the graph no newer than it understands."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import version_converter

from converters.registry import PassContext, failure, register
from edge_sdk.errors import BuildError


def model_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


@register("opset")
def convert_opset(source: Path, target: Path, context: PassContext) -> None:
    model = onnx.load(str(source))
    want = context.profile.opset
    have = model_opset(model)
    if have != want:
        try:
            model = version_converter.convert_version(model, want)
        except Exception as e:  # the converter raises plain RuntimeError per unsupported op
            if have > want:
                raise BuildError(
                    f"the model uses opset {have} and onnx cannot convert it down to opset {want}, "
                    f"the newest {context.profile.id} runs; re-export the model with "
                    f"opset_version={want}"
                ) from e
            raise failure("opset", e) from e
    onnx.save(model, str(target))
