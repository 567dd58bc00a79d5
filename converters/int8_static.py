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
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import (
    CalibrationMethod,
    TensorsData,
    create_calibrator,
    save_tensors_data,
)

from converters.calibration import METHODS, ArrayDataReader
from converters.entropy import use_fast_threshold
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


def one_dimensional_biases(source: Path, workdir: Path) -> Path:
    """``source`` with each ``[1, N]`` bias of a Gemm (its C) or of an Add after a MatMul stored
    as ``[N]`` (a copy in ``workdir``), or ``source`` itself when it has none.

    skl2onnx writes an MLP's layers as MatMul + Add with a ``[1, N]`` bias (onnxruntime's
    optimizer fuses the pair into a Gemm whose C keeps that shape), and onnxruntime's QDQ
    quantizer handles a bias only as 1-D: its int32-bias scale check fails ("truth value of an
    array ... is ambiguous"), and without that check it writes a per-axis DequantizeLinear that
    does not run. Against a Gemm's (M, N) output, or a MatMul output of rank 2 or more, ``[N]``
    broadcasts exactly as ``[1, N]`` does, so the graph computes the same values."""
    model = onnx.load(str(source))
    initializers = {i.name: i for i in model.graph.initializer}

    def row(name: str) -> bool:  # an initializer of shape [1, N]
        dims = list(initializers[name].dims) if name in initializers else []
        return len(dims) == 2 and dims[0] == 1

    uses = Counter(name for node in model.graph.node for name in node.input)
    changed = False
    for node in model.graph.node:
        gemm_row = node.op_type == "Gemm" and len(node.input) == 3 and row(node.input[2])
        if gemm_row and uses[node.input[2]] == 1:
            del initializers[node.input[2]].dims[0]  # same bytes, [1, N] -> [N]
            changed = True
    candidates = [
        (node, i)
        for node in model.graph.node
        if node.op_type == "Add" and len(node.input) == 2
        for i in (0, 1)
        if row(node.input[i])
    ]
    if not candidates:
        return _saved(model, source, workdir) if changed else source
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in (*inferred.graph.value_info, *inferred.graph.output)
        if v.type.tensor_type.HasField("shape")
    }
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    for node, i in candidates:
        bias, other = node.input[i], node.input[1 - i]
        if producers.get(other) == "MatMul" and ranks.get(other, 0) >= 2 and uses[bias] == 1:
            del initializers[bias].dims[0]  # same bytes, [1, N] -> [N]
            changed = True
    return _saved(model, source, workdir) if changed else source


def _saved(model: onnx.ModelProto, source: Path, workdir: Path) -> Path:
    prepared = workdir / f"{source.stem}-1d-biases.onnx"
    onnx.save(model, str(prepared))
    return prepared


def _cache_path(
    source: Path, context: PassContext, method: str, options: Mapping[str, Any]
) -> Path:
    key = hashlib.sha256(
        repr((str(source), method, sorted(options.items()), len(context.calibration))).encode()
    ).hexdigest()[:16]
    return context.workdir / f"ranges-{method}-{key}.json"


def _ranges(source: Path, context: PassContext, method: str, options: Mapping[str, Any]) -> Path:
    """Calibrate ``source`` once per (method, settings) and keep the ranges in the build folder."""
    cache = _cache_path(source, context, method, options)
    if cache.is_file():
        return cache
    count = len(next(iter(context.calibration.values())))
    limit = min(count, context.profile.quantization.calibration_samples)
    augmented = context.workdir / f"calibrate-{cache.stem}.onnx"
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
    use_fast_threshold(calibrator)  # same thresholds, minutes sooner (converters.entropy)
    save_tensors_data(calibrator.compute_data(), cache)
    _percentile_from_the_same_histograms(source, context, method, options, calibrator)
    del calibrator
    augmented.unlink(missing_ok=True)
    return cache


def _percentile_from_the_same_histograms(
    source: Path,
    context: PassContext,
    method: str,
    options: Mapping[str, Any],
    calibrator: Any,
) -> None:
    """After entropy, the percentile ranges the profile tries next, from the same histograms.

    With asymmetric activations both calibrators histogram the raw values (onnxruntime's
    ``HistogramCollector.collect_value``) in as many bins, over the same data in the same
    chunks: the histograms are identical, and the percentile calibrator would run the model
    over the data again only to rebuild them (a fifth of a text detector's build). A symmetric
    percentile histograms absolute values instead, so it calibrates on its own."""
    q = context.profile.quantization
    if method != "entropy" or options.get("symmetric") or "percentile" not in q.calibration_methods:
        return
    wanted = calibrator_options("percentile", False, DEFAULT_PERCENTILE)
    cache = _cache_path(source, context, "percentile", wanted)
    collector = calibrator.collector
    if cache.is_file() or collector is None:
        return
    collector.method = "percentile"
    collector.percentile = wanted["percentile"]
    save_tensors_data(
        TensorsData(CalibrationMethod.Percentile, collector.compute_collection_result()), cache
    )


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
        source = one_dimensional_biases(source, context.workdir)
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
