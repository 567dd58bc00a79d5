"""Half precision through onnxruntime's converter, keeping float32 inputs and outputs so callers
and golden vectors do not change."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

from converters.registry import PassContext, failure, register


@register("fp16")
def to_fp16(source: Path, target: Path, context: PassContext) -> None:
    try:
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    except Exception as e:
        raise failure("fp16", e) from e
    onnx.save(model, str(target))
