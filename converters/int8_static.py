"""Static int8 in QDQ form: activation ranges from calibration data, per-channel weights.

QDQ (QuantizeLinear/DequantizeLinear pairs around float ops) is the portable form: onnxruntime's
CPU provider fuses it into integer kernels, and TensorRT's explicit quantization consumes it
directly, which is why jetson-orin asks for symmetric activations as well as symmetric weights.
"""

from __future__ import annotations

from pathlib import Path

from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from converters.calibration import METHODS, ArrayDataReader
from converters.registry import PassContext, failure, register

QUANT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}


@register("int8_static")
def to_int8_static(source: Path, target: Path, context: PassContext) -> None:
    q = context.profile.quantization
    method = str(context.options.get("calibration_method", q.calibration_methods[0]))
    reader = ArrayDataReader(context.calibration, limit=q.calibration_samples)
    try:
        quantize_static(
            str(source),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=q.per_channel,
            reduce_range=q.reduce_range,
            activation_type=QUANT_TYPES[q.activation_type],
            weight_type=QUANT_TYPES[q.weight_type],
            calibrate_method=METHODS[method],
            nodes_to_exclude=list(context.options.get("nodes_to_exclude", ())),
            extra_options={
                "ActivationSymmetric": q.symmetric_activations,
                "WeightSymmetric": q.symmetric_weights,
                "QuantizeBias": q.quantize_bias,
                "CalibTensorRangeSymmetric": q.symmetric_activations,
            },
        )
    except Exception as e:
        raise failure("int8_static", e) from e
