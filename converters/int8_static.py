"""Static int8: activation ranges from calibration data, per-channel weights, QDQ or QOperator.

QDQ (QuantizeLinear/DequantizeLinear pairs around float ops) is the portable form: onnxruntime's
CPU provider fuses it into integer kernels, and TensorRT's explicit quantization consumes it
directly, which is why jetson-orin asks for symmetric activations as well as symmetric weights.
QOperator (QLinearConv, ...) is a CPU-only alternative the search may try and time.

Activation ranges are computed here, not inside ``quantize_static``, for two reasons:
- onnxruntime's entropy calibrator defaults to 128 histogram bins and 128 quantized bins, so its
  KL search has exactly one threshold to try, the full range, and "entropy" gives the same
  artifact as "minmax" byte for byte; ``quantize_static`` has no option to change the bins.
  We calibrate entropy with 2048 bins (TensorRT's setting), so it really clips outliers;
- every candidate of one build shares the same ranges per method, so each method calibrates
  once (a cache file in the build's folder), not once per candidate;
- the calibrators keep every intermediate tensor of every sample they are handed until they
  compute (12 GB for 64 samples of a text detector's 640x640 maps); handed CHUNK samples at a
  time, they merge ranges and histograms as they go, and memory follows one chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

from converters.calibration import METHODS, ArrayDataReader
from converters.int8_applicability import check_int8_applicable
from converters.registry import PassContext, failure, register

QUANT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
# Histogram settings per method (see the module docstring for why entropy needs its own).
ENTROPY_BINS = 2048
ENTROPY_QUANTIZED_BINS = 128
DEFAULT_PERCENTILE = 99.999
CHUNK = 8


def calibrator_options(method: str, symmetric: bool, percentile: float) -> dict[str, Any]:
    if method == "entropy":
        return {
            "symmetric": symmetric,
            "num_bins": ENTROPY_BINS,
            "num_quantized_bins": ENTROPY_QUANTIZED_BINS,
        }
    if method == "percentile":
        return {"symmetric": symmetric, "num_bins": ENTROPY_BINS, "percentile": percentile}
    return {"symmetric": symmetric}


def _ranges(source: Path, context: PassContext, method: str, options: Mapping[str, Any]) -> Path:
    """Calibrate ``source`` once per (method, settings) and keep the ranges in the build folder."""
    key = hashlib.sha256(
        repr((str(source), method, sorted(options.items()), len(context.calibration))).encode()
    ).hexdigest()[:16]
    cache = context.workdir / f"ranges-{method}-{key}.json"
    if cache.is_file():
        return cache
    count = len(next(iter(context.calibration.values())))
    limit = min(count, context.profile.quantization.calibration_samples)
    augmented = context.workdir / f"calibrate-{key}.onnx"
    calibrator = create_calibrator(
        source,
        None,
        augmented_model_path=str(augmented),
        calibrate_method=METHODS[method],
        extra_options=dict(options),
    )
    for start in range(0, limit, CHUNK):
        end = min(start + CHUNK, limit)
        chunk = {name: array[start:end] for name, array in context.calibration.items()}
        calibrator.collect_data(ArrayDataReader(chunk))
    save_tensors_data(calibrator.compute_data(), cache)
    del calibrator
    augmented.unlink(missing_ok=True)
    return cache


@register("int8_static")
def to_int8_static(source: Path, target: Path, context: PassContext) -> None:
    """Options a recipe may set (each defaults to the profile's setting): calibration_method,
    percentile, per_channel, reduce_range, quant_format ("qdq"/"qoperator"), activation_type,
    weight_type, symmetric_activations, nodes_to_exclude."""
    check_int8_applicable(source)
    q = context.profile.quantization
    o = context.options
    method = str(o.get("calibration_method", q.calibration_methods[0]))
    symmetric_activations = bool(o.get("symmetric_activations", q.symmetric_activations))
    percentile = float(o.get("percentile", DEFAULT_PERCENTILE))
    try:
        cache = _ranges(
            source, context, method, calibrator_options(method, symmetric_activations, percentile)
        )
        quantize_static(
            str(source),
            str(target),
            None,
            quant_format=FORMATS[str(o.get("quant_format", "qdq"))],
            per_channel=bool(o.get("per_channel", q.per_channel)),
            reduce_range=bool(o.get("reduce_range", q.reduce_range)),
            activation_type=QUANT_TYPES[str(o.get("activation_type", q.activation_type))],
            weight_type=QUANT_TYPES[str(o.get("weight_type", q.weight_type))],
            calibrate_method=METHODS[method],
            nodes_to_exclude=list(o.get("nodes_to_exclude", ())),
            calibration_cache_path=cache,
            extra_options={
                "ActivationSymmetric": symmetric_activations,
                "WeightSymmetric": bool(o.get("symmetric_weights", q.symmetric_weights)),
                "QuantizeBias": q.quantize_bias,
            },
        )
    except Exception as e:
        raise failure("int8_static", e) from e
