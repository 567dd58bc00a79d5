"""``edge-sdk bench``: time a model or a bundle's artifact on this host, batch 1.

Every format the SDK runs: an ``.onnx`` model (onnxruntime), a ``.tflite`` model (the LiteRT
interpreter, with or without signatures) and a bundle (its artifact, as its manifest says).
``--inputs FILE.npz`` times real inputs, one array per input name, fed exactly as saved (a
control value such as a sample rate is a 0-d array, a state tensor its own shape); without it
a bundle runs its first golden sample and a model random values of its input shapes. A model
that fails on the inputs given is one line naming the model, the inputs and the runtime's
reason, never an internal error.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.core.bundle import SUFFIX, read_bundle
from edge_sdk.errors import DataError, ModelFileError
from edge_sdk.runtime.timing import measure_interleaved

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

TFLITE_SUFFIX = ".tflite"


def _rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux: the process's high-water mark.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _first_line(e: BaseException, limit: int = 400) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def load_inputs(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``--inputs`` .npz, read through the bounded .npz reader (headers
    checked before reading, no pickles), each fed as saved: a 0-d array is a scalar input."""
    from edge_sdk.build.data import _NPZ_ERRORS, _read_npz

    try:
        arrays = _read_npz(path)
    except DataError:
        raise
    except _NPZ_ERRORS as e:
        raise DataError(f"{path} is not a readable .npz file: {e}") from e
    if not arrays:
        raise DataError(f"{path} holds no arrays; save one per model input with np.savez")
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise DataError(
                f"{path}: array {key!r} holds {array.dtype} values; model inputs must be numbers"
            )
    return arrays


def _match(
    given: Mapping[str, np.ndarray], wanted: Sequence[str], model: Path, source: Path
) -> dict[str, np.ndarray]:
    missing = [n for n in wanted if n not in given]
    extra = [n for n in given if n not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(repr(n) for n in missing)}")
        if extra:
            parts.append(f"has {', '.join(repr(n) for n in extra)}, which the model does not take")
        raise DataError(
            f"{source} {' and '.join(parts)}; {model} takes {', '.join(map(repr, wanted))}"
        )
    return {n: given[n] for n in wanted}


def _random(shape: Sequence[int], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, size=tuple(shape)).astype(dtype)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 10, size=tuple(shape)).astype(dtype)
    return rng.standard_normal(tuple(shape)).astype(dtype)


def _onnx_runner(
    path: Path,
    threads: int,
    inputs: Mapping[str, np.ndarray] | None,
    input_shapes: Mapping[str, tuple[int, ...]],
    source: Path | None,
) -> tuple[Callable[[], object], Mapping[str, np.ndarray]]:
    import onnxruntime as ort

    from edge_sdk.runtime.ort import open_session

    session = open_session(path, threads=threads)
    names = [i.name for i in session.get_inputs()]
    if inputs is not None and source is not None:
        feed = _match(inputs, names, path, source)
    else:
        feed = {}
        rng = np.random.default_rng(0)
        for i in session.get_inputs():
            if i.name in input_shapes:
                shape: tuple[int, ...] = input_shapes[i.name]
            elif not i.shape:
                shape = ()  # a scalar: a control value such as a sample rate
            elif all(isinstance(d, int) for d in i.shape[1:]):
                shape = (1, *i.shape[1:])
            else:
                raise DataError(
                    f"input '{i.name}' has dynamic dimensions {i.shape}; pass --input-shape "
                    f"{i.name}=1,... or --inputs FILE.npz with real values"
                )
            feed[i.name] = _random(shape, _NUMPY_TYPES.get(i.type, np.float32), rng)
    # A failing kernel logs its own C++ error lines; the one line we raise says it all.
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4
    return (lambda: session.run(None, feed, quiet)), feed


def _tflite_runner(
    path: Path,
    threads: int,
    inputs: Mapping[str, np.ndarray] | None,
    input_shapes: Mapping[str, tuple[int, ...]],
    source: Path | None,
) -> tuple[Callable[[], object], Mapping[str, np.ndarray]]:
    """The LiteRT interpreter on the file's own tensors (names, layout and dtypes as the file
    has them): no signature needed, as many shipped models have none."""
    from edge_sdk.build.sources.tflite import read_tflite
    from edge_sdk.errors import BuildError
    from edge_sdk.runtime import _interpreter

    data = read_tflite(path)
    interpreter = _interpreter(data, threads)
    details = interpreter.get_input_details()
    names = [str(d["name"]) for d in details]
    if inputs is not None and source is not None:
        feed = _match(inputs, names, path, source)
    else:
        rng = np.random.default_rng(0)
        feed = {}
        for d in details:
            name = str(d["name"])
            shape = input_shapes.get(name) or tuple(int(x) for x in d["shape"])
            feed[name] = _random(shape, d["dtype"], rng)
    try:
        for d in details:
            array = feed[str(d["name"])]
            if tuple(array.shape) != tuple(int(x) for x in d["shape"]):
                interpreter.resize_tensor_input(d["index"], list(array.shape))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BuildError(f"the TFLite runtime cannot prepare {path}: {_first_line(e)}") from e
    indexes = [(int(d["index"]), feed[str(d["name"])], d["dtype"]) for d in details]
    outputs = [int(d["index"]) for d in interpreter.get_output_details()]

    def run() -> object:
        for index, array, dtype in indexes:
            interpreter.set_tensor(index, np.ascontiguousarray(array, dtype=dtype))
        interpreter.invoke()
        return [interpreter.get_tensor(i) for i in outputs]

    return run, feed


def _bundle_runner(
    path: Path, threads: int, inputs: Mapping[str, np.ndarray] | None, source: Path | None
) -> tuple[Callable[[], object], Mapping[str, np.ndarray]]:
    from edge_sdk.core.golden import unpack
    from edge_sdk.runtime import load_bundle

    b = read_bundle(path)
    model = load_bundle(b, threads=threads)
    names = [s.name for s in b.manifest.inputs]
    if inputs is not None and source is not None:
        feed = _match(inputs, names, path, source)
    else:
        golden, _ = unpack(b.golden)
        feed = {name: array[:1] for name, array in golden.items()}
    return (lambda: model.run(feed)), feed


def bench(
    path: Path,
    *,
    threads: int | None,
    seconds: float,
    input_shapes: Mapping[str, tuple[int, ...]],
    inputs: Path | None = None,
) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist")
    threads = threads or os.cpu_count() or 1
    given = load_inputs(inputs) if inputs is not None else None
    rss_before = _rss_mb()
    if path.suffix == SUFFIX:
        run, feed = _bundle_runner(path, threads, given, inputs)
        fmt = "bundle"
    elif path.suffix == TFLITE_SUFFIX:
        run, feed = _tflite_runner(path, threads, given, input_shapes, inputs)
        fmt = "tflite"
    else:
        run, feed = _onnx_runner(path, threads, given, input_shapes, inputs)
        fmt = "onnx"
    # One run first: a model that fails on these inputs is one line, not a timing loop's
    # traceback. onnxruntime and LiteRT raise their own untyped errors (Fail, InvalidArgument,
    # RuntimeError, ValueError), so anything from the runtime is mapped here.
    try:
        run()
    except Exception as e:
        what = f"the inputs in {inputs}" if inputs is not None else "random inputs"
        shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in feed.items())
        hint = (
            "check each array's shape and dtype against the model's inputs"
            if inputs is not None
            else "pass --inputs FILE.npz with real values (control values, states)"
        )
        raise DataError(f"{path} fails on {what} ({shapes}): {_first_line(e)}; {hint}") from e
    latency = measure_interleaved({"model": run}, seconds=seconds)["model"]
    peak = _rss_mb()
    return {
        "model": str(path),
        "format": fmt,
        "threads": threads,
        "inputs": str(inputs) if inputs is not None else None,
        "latency_ms": latency.to_json(),
        "throughput_per_s": round(latency.throughput_per_s, 1),
        "peak_rss_mb": round(peak, 1),
        "model_memory_mb": round(max(peak - rss_before, 0.0), 1),
    }
