"""The int8 applicability check on small hand-made graphs: a MatMul graph is quantizable, a
tree-ensemble graph (what skl2onnx writes for a forest) is not, nor is a graph without exactly
one default-domain opset import (onnxruntime's quantizer refuses it); the passes skip, not fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters import PassContext, get_pass
from converters.int8_applicability import (
    Int8NotApplicable,
    check_int8_applicable,
    int8_not_applicable,
    quantizable_nodes,
)
from edge_sdk.core.profiles import resolve_profile

DEFAULT = helper.make_opsetid("", 17)
ML = helper.make_opsetid("ai.onnx.ml", 3)


def _matmul(opsets: list[onnx.OperatorSetIdProto]) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=opsets)


def _tree() -> onnx.ModelProto:
    """One stump: x[0] <= 0.5 -> 1.0 else 2.0."""
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["x"],
        ["y"],
        domain="ai.onnx.ml",
        n_targets=1,
        nodes_treeids=[0, 0, 0],
        nodes_nodeids=[0, 1, 2],
        nodes_featureids=[0, 0, 0],
        nodes_values=[0.5, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0],
        target_treeids=[0, 0],
        target_nodeids=[1, 2],
        target_ids=[0, 0],
        target_weights=[1.0, 2.0],
    )
    graph = helper.make_graph(
        [node],
        "tree",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
    )
    return helper.make_model(graph, opset_imports=[DEFAULT, ML])


def test_a_matmul_graph_is_quantizable() -> None:
    model = _matmul([DEFAULT])
    assert quantizable_nodes(model) == ["dense"]
    assert int8_not_applicable(model) is None


def test_a_tree_ensemble_graph_is_not_and_the_reason_names_its_ops() -> None:
    reason = int8_not_applicable(_tree())
    assert reason is not None
    assert reason.startswith("int8 not applicable: the graph has no op onnxruntime quantizes")
    assert "(TreeEnsembleRegressor)" in reason and reason.endswith("float candidates only")
    assert "\n" not in reason


@pytest.mark.parametrize(
    ("opsets", "count"),
    [([ML], 0), ([DEFAULT, ML, DEFAULT], 2)],  # none; twice, as skl2onnx 1.20 writes it
    ids=["no-default-domain", "default-domain-twice"],
)
def test_a_graph_without_exactly_one_default_opset_import_is_not(
    opsets: list[onnx.OperatorSetIdProto], count: int
) -> None:
    reason = int8_not_applicable(_matmul(opsets))
    assert reason is not None and "exactly one default-domain (ai.onnx) opset import" in reason
    assert f"the graph has {count} " in reason


@pytest.mark.parametrize("pass_name", ["int8_static", "int8_dynamic"])
def test_the_int8_passes_skip_a_tree_graph_with_our_error(pass_name: str, tmp_path: Path) -> None:
    """Not onnxruntime's "Failed to find proper ai.onnx domain": ours, one line, nothing
    written."""
    source = tmp_path / "tree.onnx"
    model = _tree()
    model.opset_import.append(DEFAULT)  # as skl2onnx writes it
    onnx.save(model, str(source))
    context = PassContext(
        resolve_profile("x86-64-vnni"), tmp_path, {"x": np.zeros((4, 1, 4), np.float32)}
    )
    with pytest.raises(Int8NotApplicable, match="no op onnxruntime quantizes"):
        get_pass(pass_name)(source, tmp_path / "out.onnx", context)
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(Int8NotApplicable):
        check_int8_applicable(source)
