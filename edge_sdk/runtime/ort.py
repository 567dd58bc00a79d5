"""onnxruntime sessions the way a profile and a manifest ask for them."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


TENSORRT = "TensorrtExecutionProvider"
TRT_CACHE_DIR = "trt-cache"


def provider_options(
    providers: Sequence[str], settings: Mapping[str, Any], version_dir: Path | None
) -> list[dict[str, str]]:
    """Options for each of ``providers``, in order. With the manifest's ``tensorrt_cache`` and
    an installed version's directory, TensorRT keeps its engine and timing caches in
    ``<version dir>/trt-cache``: the engine is built at the version's first start and read back
    at every later one, and goes when the version does."""
    options: list[dict[str, str]] = [{} for _ in providers]
    if settings.get("tensorrt_cache") is True and version_dir is not None:
        cache = str(version_dir / TRT_CACHE_DIR)
        for i, provider in enumerate(providers):
            if provider == TENSORRT:
                options[i] = {
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": cache,
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": cache,
                }
    return options


def open_session(
    model: Path | bytes,
    *,
    threads: int,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    graph_level: str = "all",
    settings: Mapping[str, Any] | None = None,
    version_dir: Path | None = None,
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
    chosen = provider_options(usable, settings or {}, version_dir)
    for i, opts in enumerate(chosen):
        if "trt_engine_cache_path" in opts:
            try:
                Path(opts["trt_engine_cache_path"]).mkdir(exist_ok=True)
            except OSError as e:  # a read-only state directory: run, rebuilding the engine
                log.warning("no TensorRT engine cache (%s): the engine is built at every start", e)
                chosen[i] = {}
    try:
        return ort.InferenceSession(
            source, options, providers=list(zip(usable, chosen, strict=True))
        )
    except Exception as e:  # onnxruntime raises its own untyped Fail / InvalidGraph errors
        raise BuildError(f"onnxruntime cannot load the model: {str(e).splitlines()[0]}") from e
