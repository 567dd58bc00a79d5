"""Graph optimisation and shape inference, through onnxruntime's own quantization pre-processor:
symbolic shape inference (transformers), basic graph optimisation (constant folding, redundant
node removal: portable to every execution provider, unlike the extended level's contrib ops),
then ONNX shape inference."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnxruntime as ort
from onnxruntime.quantization.shape_inference import quant_pre_process

from converters.registry import PassContext, failure, register

log = logging.getLogger(__name__)
_ORT_LOGGERS = (
    "onnxruntime.quantization.shape_inference",
    "onnxruntime.tools.symbolic_shape_infer",
)


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


@contextlib.contextmanager
def _ort_logs_quiet() -> Iterator[None]:
    """onnxruntime's pre-processor logs a whole traceback at ERROR (and its C++ core warnings)
    when its own optimisation fails, then carries on; the user would see it above our one
    line. Keep those records at DEBUG on our logger (EDGE_SDK_LOG=DEBUG shows them)."""
    ort.set_default_logger_severity(3)  # C++ core: errors and worse only
    quiet = [logging.getLogger(name) for name in _ORT_LOGGERS]
    saved = [(logger.propagate, logger.handlers[:]) for logger in quiet]
    relay = _Relay()
    for logger in quiet:
        logger.propagate = False
        logger.handlers[:] = [relay]
    try:
        yield
    finally:
        for logger, (propagate, handlers) in zip(quiet, saved, strict=True):
            logger.propagate = propagate
            logger.handlers[:] = handlers


class _Relay(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        first = (record.getMessage().splitlines() or [""])[0]
        log.debug("onnxruntime: %s", first)


def _pre_process(source: Path, target: Path) -> None:
    with _ort_logs_quiet():
        _pre_process_loud(source, target)


def _pre_process_loud(source: Path, target: Path) -> None:
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
