"""Dynamic-range int8: weights quantized ahead of time, activations at run time. No calibration;
fast for MatMul-heavy models, often slow for convolutions (the search measures, not assumes)."""

from __future__ import annotations

from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

from converters.int8_applicability import check_int8_applicable
from converters.registry import PassContext, failure, register


@register("int8_dynamic")
def to_int8_dynamic(source: Path, target: Path, context: PassContext) -> None:
    check_int8_applicable(source)
    q = context.profile.quantization
    try:
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=q.dynamic_per_channel,
            reduce_range=q.reduce_range,
            weight_type=QuantType.QInt8 if q.weight_type == "int8" else QuantType.QUInt8,
            nodes_to_exclude=list(context.options.get("nodes_to_exclude", ())),
        )
    except Exception as e:
        raise failure("int8_dynamic", e) from e
