"""Which layers hurt int8 fidelity most, measured with onnxruntime's QDQ debugging tool.

Each tensor's signal-to-quantization-noise ratio (the float model's value against the QDQ
model's) is collected over a few calibration samples; a layer's damage is how many dB of SQNR
are lost between its input and its output, blamed on the node whose Q/DQ pairs cause it (a
weighted layer, or a quantized op such as the Add of a power spectrum). The most damaging nodes
are the ones worth keeping in float for a mixed-precision candidate.

The QDQ model runs with graph optimisation off, so Q/DQ stay unfused and the figures are the
quantization's own damage (what every non-saturating target computes). Run fused, on an x86 host
without VNNI, they measured the host's u8s8 saturation instead, and keeping the "most damaging"
layers in float made real models less accurate, not more.

Also here: the nodes a "float-ops" candidate keeps in float (op types int8 hurts, depthwise
convolutions, the first convolution and the output head), read from the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_activation_error,
    create_activation_matching,
    modify_model_output_intermediate_tensors,
)

from converters.calibration import ArrayDataReader
from converters.registry import failure

# Ops whose quantization decides most of the error: their weights are quantized too, and an
# activation fused after one (Conv -> Relu) is measured as part of it.
WEIGHTED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "LSTM", "GRU"}


def rank_sensitive_nodes(
    float_model: Path,
    qdq_model: Path,
    calibration: Mapping[str, np.ndarray],
    workdir: Path,
    samples: int = 8,
) -> list[tuple[str, float]]:
    """Nodes of ``float_model`` to keep in float, most damaging first, with the SQNR (dB) each
    loses: weighted layers, and the quantized nodes whose Q/DQ pairs the measured damage
    follows (see ``_rank``).

    Eight samples: every tensor of both models is kept for each, and the ranking was a third
    of a text detector's build at sixteen. SQNR is a ratio of energies summed over millions of
    values per tensor; the order it gives settles in fewer samples than fidelity does, and each
    mixed-precision step it proposes is then judged on the whole validation set."""
    try:
        augmented_float = workdir / "sensitivity_float.onnx"
        augmented_qdq = workdir / "sensitivity_qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_model), str(augmented_float))
        modify_model_output_intermediate_tensors(str(qdq_model), str(augmented_qdq))
        unfused = ort.SessionOptions()
        unfused.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        unfused.log_severity_level = 3
        float_acts = collect_activations(
            str(augmented_float), ArrayDataReader(calibration, limit=samples)
        )
        qdq_acts = collect_activations(
            str(augmented_qdq), ArrayDataReader(calibration, limit=samples), unfused
        )
        errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    except Exception as e:
        raise failure("sensitivity", e) from e
    graph = onnx.load(str(float_model), load_external_data=False).graph
    sqnr = {name: float(e.get("xmodel_err", float("inf"))) for name, e in errors.items()}
    return _rank(graph, sqnr)


def _quantizable() -> set[str]:
    # The op types quantize_static quantizes by default in either format.
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry)


def _rank(graph: onnx.GraphProto, sqnr: Mapping[str, float]) -> list[tuple[str, float]]:
    """Blame each measured loss of SQNR on the node whose exclusion removes it.

    A weighted layer's damage is the SQNR (dB) of what flows in minus that of what flows out
    (plain output SQNR would blame the last layers for all the noise upstream of them).

    Other nodes count too, because the damage int8 does is not always at a weighted layer:
    Silero VAD's STFT sums the squared real and imaginary parts (an Add, quantized, so its
    output gets a Q/DQ pair) and takes the square root (Sqrt, not quantized). The power
    spectrum's range spans orders of magnitude, quiet bins round to zero, and the square root
    turns that into an 18 dB loss measured at the Sqrt's output; keeping the Add in float
    removes it. So a node that loses SQNR is blamed itself when quantize_static quantizes its
    op type, and otherwise on the producer of its noisiest input, whose Q/DQ pair feeds it.
    An activation fused into a weighted layer (Conv -> Relu -> Q) is that layer's own output
    and not counted twice.
    """
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    quantizable = _quantizable()
    damage: dict[str, float] = {}
    claimed: set[str] = set()  # tensors already measured as a weighted layer's output

    def blame(name: str, loss: float) -> None:
        if name:
            damage[name] = max(loss, damage.get(name, float("-inf")))

    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or not node.input:
            continue
        after = _downstream(node.output[0], sqnr, consumers)
        if after is None:
            continue
        claimed.add(_measured_output(node.output[0], sqnr, consumers))
        before = _upstream(node.input[0], sqnr, producers)
        blame(node.name, (before if before is not None else after) - after)
    for node in graph.node:
        if node.op_type in WEIGHTED_OPS or not node.output or node.output[0] in claimed:
            continue
        after_value = sqnr.get(node.output[0])
        inputs = [(name, sqnr[name]) for name in node.input if name in sqnr]
        if after_value is None or not inputs:
            continue
        worst, before_value = min(inputs, key=lambda item: item[1])
        loss = before_value - after_value
        if loss <= 0.0:  # shape ops carry their input's error; keeping them float gains nothing
            continue
        if node.op_type in quantizable:
            blame(node.name, loss)
        elif worst in producers and producers[worst].op_type in quantizable:
            blame(producers[worst].name, loss)
    ranked = sorted(damage.items(), key=lambda item: -item[1])
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


def _measured_output(
    tensor: str, sqnr: Mapping[str, float], consumers: Mapping[str, list[onnx.NodeProto]]
) -> str:
    """The tensor ``_downstream`` found the SQNR of, starting from ``tensor``."""
    for _ in range(_HOPS):
        if tensor in sqnr:
            return tensor
        following = consumers.get(tensor, [])
        if len(following) != 1 or not following[0].output:
            return tensor
        tensor = following[0].output[0]
    return tensor


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


def _is_depthwise(node: onnx.NodeProto, initializers: Mapping[str, onnx.TensorProto]) -> bool:
    if node.op_type != "Conv" or len(node.input) < 2:
        return False
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    weight = initializers.get(node.input[1])
    return group > 1 and weight is not None and len(weight.dims) >= 2 and weight.dims[1] == 1


def float_op_nodes(model: Path, op_types: tuple[str, ...] | list[str]) -> list[str]:
    """Names of the nodes of these op types ("depthwise" stands for depthwise convolutions)."""
    graph = onnx.load(str(model), load_external_data=False).graph
    initializers = {t.name: t for t in graph.initializer}
    wanted = set(op_types)
    return [
        node.name
        for node in graph.node
        if node.name
        and (
            node.op_type in wanted or ("depthwise" in wanted and _is_depthwise(node, initializers))
        )
    ]


def head_nodes(model: Path, depth: int = 12) -> list[str]:
    """The first weighted node and the weighted nodes nearest each graph output (the output
    head): the layers whose int8 error every later layer inherits, or the user sees directly."""
    graph = onnx.load(str(model), load_external_data=False).graph
    weighted = [n for n in graph.node if n.op_type in WEIGHTED_OPS and n.name]
    if not weighted:
        return []
    found = [weighted[0].name]
    producers = {out: node for node in graph.node for out in node.output}
    frontier = [o.name for o in graph.output]
    seen: set[int] = set()
    for _ in range(depth):
        following: list[str] = []
        for tensor in frontier:
            node = producers.get(tensor)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type in WEIGHTED_OPS:
                if node.name and node.name not in found:
                    found.append(node.name)
                continue
            following.extend(node.input)
        frontier = following
    return found
