"""onnxruntime sessions the way a profile and a manifest ask for them."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from edge_sdk.errors import BuildError

log = logging.getLogger(__name__)


def host_threads(requested: int) -> int:
    """The profile's thread count, capped at this host's cores (more threads than cores only
    adds contention and makes timings lie)."""
    return max(1, min(requested, os.cpu_count() or 1))


def available_providers(wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split the profile's providers into those this onnxruntime has and those it lacks."""
    have = set(ort.get_available_providers())
    usable = [p for p in wanted if p in have]
    missing = [p for p in wanted if p not in have]
    if "CPUExecutionProvider" not in usable:
        usable.append("CPUExecutionProvider")
    return usable, missing


GRAPH_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def graph_level_for(precision: str) -> str:
    """The session optimization level an artifact of this precision should run with.

    onnxruntime's CPU layout optimizations (level "all") crash session creation with a segfault
    on some fp16 graphs (seen with 1.32 on the transformer example); "extended" keeps every other
    fusion. The level travels in the bundle's manifest so the device opens it the same way.
    """
    return "extended" if precision == "fp16" else "all"


def open_session(
    model: Path | bytes,
    *,
    threads: int,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    graph_level: str = "all",
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = GRAPH_LEVELS.get(graph_level, GRAPH_LEVELS["all"])
    options.intra_op_num_threads = host_threads(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    usable, missing = available_providers(providers)
    if missing:
        log.warning("execution providers not available here, falling back: %s", ", ".join(missing))
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, options, providers=usable)
    except Exception as e:  # onnxruntime raises its own untyped Fail / InvalidGraph errors
        raise BuildError(f"onnxruntime cannot load the model: {str(e).splitlines()[0]}") from e
