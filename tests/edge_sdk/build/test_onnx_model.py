"""Reading a source ONNX model: its inputs and outputs as the build sees them, and every way a
file can fail to be a model as one line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_sdk.build.onnx_model import load_source
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import ModelFileError


def test_the_digits_model_is_described(digits: Path) -> None:
    model, source = load_source(digits / "model.onnx")
    assert model.graph.node and source.opset == 17
    assert source.size_bytes == (digits / "model.onnx").stat().st_size
    assert source.inputs == (TensorSpec("input", ("batch", 1, 8, 8), "float32", "NCHW"),)
    assert source.outputs == (TensorSpec("logits", ("batch", 10), "float32", "NC"),)
    assert source.producer.startswith("pytorch ")


def _model(path: Path, *, weight_as_input: bool = False, nodes: bool = True) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
    w = numpy_helper.from_array(np.ones(3, np.float32), "w")
    inputs = [x]
    if weight_as_input:  # what older exporters wrote: every initializer also a graph input
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [3]))
    body = [helper.make_node("Add", ["x", "w"], ["y"])] if nodes else []
    graph = helper.make_graph(body, "g", inputs, [y], initializer=[w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_initializer_listed_as_an_input_is_not_fed_and_unnamed_dims_are_unknown(
    tmp_path: Path,
) -> None:
    _, source = load_source(_model(tmp_path / "old.onnx", weight_as_input=True))
    assert [spec.name for spec in source.inputs] == ["x"]
    assert source.inputs[0].shape == ("?", 3) and source.outputs[0].shape == ("n", 3)


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x00\x01 this is not a protobuf \xff\xff")
    return path


def _named(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda t: t / "absent.onnx", "does not exist"),
        (lambda t: t, "is not a file"),
        (lambda t: _named(t, "model.pt"), r"is not an \.onnx file .*export the model to ONNX"),
        (_garbage, "is not a readable ONNX model"),
        (lambda t: _model(t / "empty.onnx", nodes=False), "holds no ONNX graph"),
    ],
)
def test_what_is_not_a_model_is_one_line_naming_the_file(
    tmp_path: Path, make: object, words: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ModelFileError, match=words) as info:
        load_source(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_an_invalid_graph_names_the_first_problem(tmp_path: Path) -> None:
    path = _model(tmp_path / "bad.onnx")
    model = onnx.load(str(path))
    model.graph.node[0].op_type = "NoSuchOp"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match=r"bad\.onnx is not a valid ONNX model: ") as info:
        load_source(path)
    assert "\n" not in str(info.value)
