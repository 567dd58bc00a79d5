"""Which layers hurt int8 fidelity most, measured with onnxruntime's QDQ debugging tool.

Each quantized tensor's signal-to-quantization-noise ratio (its float value against its value
after the QDQ pair) is collected over a few calibration samples; the nodes producing the
noisiest tensors are the ones worth keeping in float for a mixed-precision candidate.
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
    float_model: Path, qdq_model: Path, calibration: Mapping[str, np.ndarray], workdir: Path,
    samples: int = 16,
) -> list[tuple[str, float]]:
    """Weighted nodes of ``float_model``, noisiest first, with the SQNR (dB) of their output."""
    try:
        augmented_float = workdir / "sensitivity_float.onnx"
        augmented_qdq = workdir / "sensitivity_qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_model), str(augmented_float))
        modify_model_output_intermediate_tensors(str(qdq_model), str(augmented_qdq))
        float_acts = collect_activations(
            str(augmented_float), ArrayDataReader(calibration, limit=samples)
        )
        qdq_acts = collect_activations(str(augmented_qdq), ArrayDataReader(calibration, limit=samples))
        errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    except Exception as e:
        raise failure("sensitivity", e) from e
    graph = onnx.load(str(float_model), load_external_data=False).graph
    ranked: list[tuple[str, float]] = []
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        # Local quantization noise of this tensor where known, else the damage seen here
        # against the float model. Lower SQNR means more noise.
        sqnr = [_sqnr(errors[out]) for out in node.output if out in errors]
        if sqnr:
            ranked.append((node.name, min(sqnr)))
    ranked.sort(key=lambda item: item[1])
    return ranked


def _sqnr(entry: Mapping[str, float]) -> float:
    return float(entry.get("qdq_err", entry.get("xmodel_err", float("inf"))))
