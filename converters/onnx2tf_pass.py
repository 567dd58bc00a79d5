"""ONNX to a TensorFlow SavedModel through onnx2tf, the first step of every TFLite recipe.

onnx2tf reaches for the network in two places: it downloads a sample image set when asked to
quantize without calibration data, and again, even with calibration data, for its own accuracy
check on 4-D, 3-channel inputs with a small fixed batch. The build must never touch the
network, so the download function is replaced for the duration of the conversion by one that
hands back our calibration samples, and our own quantization is done by TFLiteConverter later.

Node names are made TF-safe first on every route: onnx2tf names each Keras layer after its ONNX
node, and TensorFlow refuses a scope name outside [A-Za-z0-9_.\\/>-]. Paddle exports name nodes
"Softmax@0", which is what failed as 'Exception encountered when calling layer "tf.nn.softmax"'
on PP-OCR's MobileNetV3-style classifier.

Routes: when onnx2tf fails on a pattern, the pass tries the next sound route instead of giving
up, and records one line per route tried (``PassContext.routes``) for the build report:
1. onnx2tf as is;
2. shape no-ops folded first: a Flatten of a 2-D tensor and a Reshape to the shape its input
   already has become Identity. onnx's version converter wraps an opset-11 Softmax that way
   (Flatten, Softmax, Reshape back to Shape(x)), and onnx2tf's Softmax, handed a reshape
   whose target shape it can only know at run time, fails ("tf.nn.softmax" TFOpLambda) on
   MobileNet-style classifiers exported at opset 11;
3. as 2, with onnx2tf's pseudo-operator replacements (HardSwish, Erf, GeLU, PReLU, LeakyReLU
   as plain arithmetic) and group convolutions split, its own fallbacks for ops it lowers badly.
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, absl banners) is not the user's business.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import contextlib
import io
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from converters.registry import PassContext, failure, register
from edge_sdk.errors import BuildError

# onnx2tf slices its sample set by batch size; it never needs more than this many.
SAMPLE_COUNT = 20


def nhwc_samples(calibration: dict[str, np.ndarray] | Any) -> np.ndarray:
    """The first input's calibration samples as NHWC float32, at least SAMPLE_COUNT of them."""
    array = np.asarray(next(iter(calibration.values())), np.float32)
    if array.ndim == 4:
        array = array.transpose(0, 2, 3, 1)
    reps = -(-SAMPLE_COUNT // len(array))
    return np.concatenate([array] * reps)[:SAMPLE_COUNT]


def _write_static(source: Path, target: Path, calibration: dict[str, np.ndarray] | Any) -> None:
    """A copy of the model with every input dimension fixed (batch 1, the rest from the data)
    and shapes re-inferred: onnx2tf mis-slices shapes computed from dynamic height/width, as in
    exported detectors."""
    import onnx

    model = onnx.load(str(source))
    for graph_input in model.graph.input:
        if graph_input.name not in calibration:
            continue
        dims = (1, *np.shape(calibration[graph_input.name])[1:])
        for dim, size in zip(graph_input.type.tensor_type.shape.dim, dims, strict=False):
            dim.Clear()
            dim.dim_value = int(size)
    del model.graph.value_info[:]
    static = target.with_suffix(".static.onnx")
    onnx.save(model, str(static))
    # With every dimension known, onnxruntime's constant folding turns the Shape/Gather/Concat
    # chains into constants, which onnx2tf converts reliably.
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(static), str(target), skip_symbolic_shape=True)
    except Exception as e:
        raise failure("onnx2tf", e) from e


@contextlib.contextmanager
def offline(samples: np.ndarray) -> Iterator[None]:
    import onnx2tf.onnx2tf as core
    import onnx2tf.utils.common_functions as common

    original = core.download_test_image_data

    def local_samples() -> np.ndarray:
        return samples

    core.download_test_image_data = local_samples
    common.download_test_image_data = local_samples
    try:
        yield
    finally:
        core.download_test_image_data = original
        common.download_test_image_data = original


_UNSAFE = re.compile(r"[^A-Za-z0-9_./>-]")


def tf_safe_names(path: Path) -> int:
    """Rename, in place, nodes whose names TensorFlow refuses as scope names; return how many.
    Tensor names (the model's I/O names among them) are left as they are."""
    import onnx

    model = onnx.load(str(path))
    taken = {node.name for node in model.graph.node}
    renamed = 0
    for node in model.graph.node:
        if node.name and (_UNSAFE.search(node.name) or node.name[0] in "_.-/>"):
            name = "n" + _UNSAFE.sub("_", node.name)
            while name in taken:
                name += "_"
            taken.add(name)
            node.name = name
            renamed += 1
    if renamed:
        onnx.save(model, str(path))
    return renamed


def fold_shape_noops(path: Path) -> int:
    """Replace, in place, Flatten and Reshape nodes that leave a statically known shape as it is
    by Identity; return how many were replaced."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    shapes: dict[str, list[int] | None] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        dims = info.type.tensor_type.shape.dim
        known = all(d.HasField("dim_value") for d in dims) and info.type.tensor_type.HasField(
            "shape"
        )
        shapes[info.name] = [d.dim_value for d in dims] if known else None
    for tensor in graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    folded = 0
    for i, node in enumerate(graph.node):
        if node.op_type not in ("Flatten", "Reshape") or not node.input or not node.output:
            continue
        before, after = shapes.get(node.input[0]), shapes.get(node.output[0])
        if node.op_type == "Flatten":
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            noop = before is not None and len(before) == 2 and axis in (1, -1)
        else:
            noop = before is not None and after is not None and before == after
        if noop:
            graph.node[i].CopyFrom(
                onnx.helper.make_node("Identity", [node.input[0]], list(node.output), node.name)
            )
            folded += 1
    if folded:
        onnx.save(model, str(path))
    return folded


PSEUDO_OPERATORS = ["HardSwish", "Erf", "GeLU", "PReLU", "LeakyReLU"]
# (route name, fold shape no-ops first, onnx2tf keyword arguments)
ROUTES: tuple[tuple[str, bool, dict[str, Any]], ...] = (
    ("onnx2tf", False, {}),
    ("onnx2tf, shape no-ops folded", True, {}),
    (
        "onnx2tf, shape no-ops folded, pseudo operators, group convolutions split",
        True,
        {"replace_to_pseudo_operators": PSEUDO_OPERATORS, "disable_group_convolution": True},
    ),
)


@register("onnx2tf")
def to_saved_model(source: Path, target: Path, context: PassContext) -> None:
    failures: list[str] = []
    for name, fold, options in ROUTES:
        shutil.rmtree(target, ignore_errors=True)
        try:
            _convert(source, target, context, fold, options)
        except BuildError as e:
            line = str(e).removeprefix("pass 'onnx2tf' failed: ")
            failures.append(f"{name}: {line}")
            context.routes.append(f"tflite, {name}: failed: {line}")
            continue
        context.routes.append(f"tflite, {name}: converted")
        return
    raise BuildError(
        "pass 'onnx2tf' failed on every route ("
        + "; ".join(failures)
        + "); build for an ONNX profile (arm64-generic runs onnxruntime on the same boards), "
        "or re-export the model at opset 13 or newer"
    )


def _convert(
    source: Path, target: Path, context: PassContext, fold: bool, options: dict[str, Any]
) -> None:
    import onnx2tf

    with tempfile.TemporaryDirectory(dir=context.workdir) as tmp:
        # onnx2tf rewrites its input file in place in some modes: hand it a copy.
        copy = Path(tmp) / "model.onnx"
        _write_static(source, copy, context.calibration)
        tf_safe_names(copy)
        if fold:
            fold_shape_noops(copy)
        cwd = Path.cwd()
        try:
            # It also writes stray files to the working directory.
            os.chdir(tmp)
            # It prints its SavedModel summary to stdout, which belongs to our report.
            with (
                offline(nhwc_samples(context.calibration)),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                onnx2tf.convert(
                    input_onnx_file_path=str(copy),
                    output_folder_path=str(target),
                    output_signaturedefs=True,
                    not_use_onnxsim=True,
                    copy_onnx_input_output_names_to_tflite=True,
                    verbosity="error",
                    **options,
                )
        except SystemExit as e:  # onnx2tf exits the process on some conversion errors
            raise failure("onnx2tf", RuntimeError(f"onnx2tf stopped (exit {e.code})")) from e
        except Exception as e:
            raise failure("onnx2tf", e) from e
        finally:
            os.chdir(cwd)
