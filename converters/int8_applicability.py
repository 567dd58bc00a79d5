"""Whether int8 can do anything for a graph, decided before a quantizer runs.

Classic machine-learning graphs (skl2onnx's tree ensembles, linear models, scalers: ops of the
``ai.onnx.ml`` domain) hold no op onnxruntime quantizes, so an int8 artifact would be the float
model with extra steps. skl2onnx also writes the default-domain opset import twice, which
onnxruntime's quantizer refuses with "Failed to find proper ai.onnx domain". Either way the int8
candidates are skipped with one line that says why, not reported as failures.

The op types come from onnxruntime's own registries (the QDQ, QOperator and dynamic ones), so a
newer onnxruntime that quantizes more op types is followed without a change here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx
from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

from edge_sdk.errors import BuildError

# Every op type some onnxruntime quantization mode rewrites; only in the default domain.
QUANTIZABLE_OPS = (
    frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry) | frozenset(IntegerOpsRegistry)
)
DEFAULT_DOMAINS = ("", "ai.onnx")
# How many op types a reason names before "+N more".
SHOWN = 6


class Int8NotApplicable(BuildError):
    """int8 cannot help this graph: the candidate is skipped, not failed."""


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, including those of If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names (or op types, for unnamed nodes) of the nodes onnxruntime would quantize."""
    return [
        node.name or node.op_type
        for node in _nodes(model.graph)
        if node.domain in DEFAULT_DOMAINS and node.op_type in QUANTIZABLE_OPS
    ]


def int8_not_applicable(model: onnx.ModelProto) -> str | None:
    """Why int8 cannot help ``model`` (one line), or None when it can."""
    if not quantizable_nodes(model):
        types = list(dict.fromkeys(node.op_type for node in _nodes(model.graph)))
        more = f", +{len(types) - SHOWN} more" if len(types) > SHOWN else ""
        shown = ", ".join(types[:SHOWN]) + more
        return (
            f"int8 not applicable: the graph has no op onnxruntime quantizes "
            f"({shown or 'no ops'}); float candidates only"
        )
    defaults = [o for o in model.opset_import if o.domain in DEFAULT_DOMAINS]
    if len(defaults) != 1:
        found = ", ".join(str(o.version) for o in defaults) or "none"
        return (
            f"int8 not applicable: onnxruntime's quantizer needs exactly one default-domain "
            f"(ai.onnx) opset import and the graph has {len(defaults)} (versions: {found}); "
            "float candidates only"
        )
    return None


def check_int8_applicable(source: Path) -> None:
    """Raise ``Int8NotApplicable`` when int8 cannot help the model at ``source``."""
    reason = int8_not_applicable(onnx.load(str(source), load_external_data=False))
    if reason is not None:
        raise Int8NotApplicable(reason)
