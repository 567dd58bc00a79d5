"""ONNX to a TensorFlow SavedModel through onnx2tf, the first step of every TFLite recipe.

onnx2tf reaches for the network in two places: it downloads a sample image set when asked to
quantize without calibration data, and again, even with calibration data, for its own accuracy
check on 4-D, 3-channel inputs with a small fixed batch. The build must never touch the
network, so the download function is replaced for the duration of the conversion by one that
hands back our calibration samples, and our own quantization is done by TFLiteConverter later.
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, absl banners) is not the user's business.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from converters.registry import PassContext, failure, register

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


@register("onnx2tf")
def to_saved_model(source: Path, target: Path, context: PassContext) -> None:
    import onnx2tf

    with tempfile.TemporaryDirectory(dir=context.workdir) as tmp:
        # onnx2tf rewrites its input file in place in some modes: hand it a copy.
        copy = Path(tmp) / "model.onnx"
        _write_static(source, copy, context.calibration)
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
                )
        except SystemExit as e:  # onnx2tf exits the process on some conversion errors
            raise failure("onnx2tf", RuntimeError(f"onnx2tf stopped (exit {e.code})")) from e
        except Exception as e:
            raise failure("onnx2tf", e) from e
        finally:
            os.chdir(cwd)
