"""``edge-sdk bench``: time a model or a bundle's artifact on this host, batch 1."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.bundle import SUFFIX, read_bundle
from edge_sdk.errors import DataError, ModelFileError
from edge_sdk.ort_runtime import open_session
from edge_sdk.runtime import OnnxModel, load_bundle
from edge_sdk.timing import measure_interleaved

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux: the process's high-water mark.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(
    path: Path, *, threads: int | None, seconds: float, input_shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist")
    threads = threads or os.cpu_count() or 1
    rss_before = _rss_mb()
    if path.suffix == SUFFIX:
        b = read_bundle(path)
        from edge_sdk.golden import unpack

        model = load_bundle(b, threads=threads)
        inputs, _ = unpack(b.golden)
        feed = {name: array[:1] for name, array in inputs.items()}
    else:
        session = open_session(path, threads=threads)
        model = OnnxModel(session)
        feed = {}
        rng = np.random.default_rng(0)
        for i in session.get_inputs():
            if i.name in input_shapes:
                shape = input_shapes[i.name]
            elif all(isinstance(d, int) for d in i.shape[1:]):
                shape = (1, *i.shape[1:])
            else:
                raise DataError(
                    f"input '{i.name}' has dynamic dimensions {i.shape}; pass --input-shape "
                    f"{i.name}=1,..."
                )
            dtype = _NUMPY_TYPES.get(i.type, np.float32)
            feed[i.name] = rng.standard_normal(shape).astype(dtype)
    latency = measure_interleaved({"model": lambda: model.run(feed)}, seconds=seconds)["model"]
    peak = _rss_mb()
    return {
        "model": str(path),
        "threads": threads,
        "latency_ms": latency.to_json(),
        "throughput_per_s": round(latency.throughput_per_s, 1),
        "peak_rss_mb": round(peak, 1),
        "model_memory_mb": round(max(peak - rss_before, 0.0), 1),
    }
