"""Graph optimisation and shape inference, through onnxruntime's own quantization pre-processor:
symbolic shape inference (transformers), basic graph optimisation (constant folding, redundant
node removal: portable to every execution provider, unlike the extended level's contrib ops),
then ONNX shape inference."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from onnxruntime.quantization.shape_inference import quant_pre_process

from converters.registry import PassContext, failure, register

log = logging.getLogger(__name__)


@register("optimize")
def optimize(source: Path, target: Path, context: PassContext) -> None:
    # When symbolic inference is incomplete, onnxruntime saves a debug copy of the model
    # (sym_shape_infer_temp.onnx plus an external-data file per run) into the *working
    # directory*; run it from a scratch directory so nothing lands in the user's.
    source, target = source.resolve(), target.resolve()
    with (
        tempfile.TemporaryDirectory(prefix="edge-sdk-optimize-") as scratch,
        contextlib.chdir(scratch),
    ):
        _pre_process(source, target)


def _pre_process(source: Path, target: Path) -> None:
    try:
        quant_pre_process(str(source), str(target))
    except Exception as e:
        # Symbolic shape inference fails on some exported graphs; plain ONNX inference often
        # still works, so retry without it before giving up.
        log.info("symbolic shape inference failed (%s); retrying without it", e)
        try:
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        except Exception as e2:
            raise failure("optimize", e2) from e2
