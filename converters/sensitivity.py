"""Which layers hurt int8 fidelity most, measured with onnxruntime's QDQ debugging tool.

Each tensor's signal-to-quantization-noise ratio (the float model's value against the QDQ
model's) is collected over a few calibration samples; a layer's damage is how many dB of SQNR
are lost between its input and its output. The most damaging layers are the ones worth keeping
in float for a mixed-precision candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_activation_error,
    create_activation_matching,
    modify_model_output_intermediate_tensors,
)

from converters.calibration import ArrayDataReader
from converters.registry import failure

# Ops whose quantization decides most of the error; keeping one of them in float is a meaningful
# mixed-precision step, keeping a Relu in float is not.
WEIGHTED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "LSTM", "GRU"}


def rank_sensitive_nodes(
    float_model: Path,
    qdq_model: Path,
    calibration: Mapping[str, np.ndarray],
    workdir: Path,
    samples: int = 16,
) -> list[tuple[str, float]]:
    """Weighted nodes of ``float_model``, most damaging first, with the SQNR (dB) each loses."""
    try:
        augmented_float = workdir / "sensitivity_float.onnx"
        augmented_qdq = workdir / "sensitivity_qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_model), str(augmented_float))
        modify_model_output_intermediate_tensors(str(qdq_model), str(augmented_qdq))
        float_acts = collect_activations(
            str(augmented_float), ArrayDataReader(calibration, limit=samples)
        )
        qdq_acts = collect_activations(
            str(augmented_qdq), ArrayDataReader(calibration, limit=samples)
        )
        errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    except Exception as e:
        raise failure("sensitivity", e) from e
    graph = onnx.load(str(float_model), load_external_data=False).graph
    sqnr = {name: float(e.get("xmodel_err", float("inf"))) for name, e in errors.items()}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    ranked: list[tuple[str, float]] = []
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or not node.input:
            continue
        after = _downstream(node.output[0], sqnr, consumers)
        before = _upstream(node.input[0], sqnr, producers)
        if after is not None:
            # Damage this layer adds: SQNR (dB) of what flows in minus SQNR of what flows out.
            # Plain output SQNR would blame the last layers for all the noise upstream of them.
            ranked.append((node.name, (before if before is not None else after) - after))
    ranked.sort(key=lambda item: -item[1])
    return ranked


# The quantizer puts its QDQ pair after a fused activation (Conv -> Relu -> Q), and shape ops
# carry their input's error unchanged; follow a few such hops to find a measured tensor.
_HOPS = 4


def _downstream(
    tensor: str, sqnr: Mapping[str, float], consumers: Mapping[str, list[onnx.NodeProto]]
) -> float | None:
    for _ in range(_HOPS):
        if tensor in sqnr:
            return sqnr[tensor]
        following = consumers.get(tensor, [])
        if len(following) != 1 or not following[0].output:
            return None
        tensor = following[0].output[0]
    return sqnr.get(tensor)


def _upstream(
    tensor: str, sqnr: Mapping[str, float], producers: Mapping[str, onnx.NodeProto]
) -> float | None:
    for _ in range(_HOPS):
        if tensor in sqnr:
            return sqnr[tensor]
        node = producers.get(tensor)
        if node is None or not node.input:
            return None
        tensor = node.input[0]
    return sqnr.get(tensor)
