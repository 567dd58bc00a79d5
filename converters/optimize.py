"""Graph optimisation and shape inference, through onnxruntime's own quantization pre-processor:
symbolic shape inference (transformers), basic graph optimisation (constant folding, redundant
node removal: portable to every execution provider, unlike the extended level's contrib ops),
then ONNX shape inference."""

from __future__ import annotations

import logging
from pathlib import Path

from onnxruntime.quantization.shape_inference import quant_pre_process

from converters.registry import PassContext, failure, register

log = logging.getLogger(__name__)


@register("optimize")
def optimize(source: Path, target: Path, context: PassContext) -> None:
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
