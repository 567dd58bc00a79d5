"""The native half of a TFLite source, run in a child process (``python -m``): tf2onnx's
conversion (which opens the file in TensorFlow Lite's interpreter) and the reference run in
LiteRT. A damaged .tflite file can crash either with a segmentation fault, which would take the
whole build with it; in a child it is one line (``edge_sdk.build.sources.tflite``).

    python -m edge_sdk.build.sources.tflite_child convert MODEL.tflite OUT.onnx OPSET RESULT
    python -m edge_sdk.build.sources.tflite_child run MODEL.tflite FEEDS.npz OUT.npz RESULT

RESULT receives "ok", or the one line that says what failed.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np

from edge_sdk.build.sources import first_line

# The newest opset tf2onnx 1.17 writes; the build's opset pass takes it to the profile's.
MAX_TF2ONNX_OPSET = 18


def convert(model: Path, onnx: Path, opset: int) -> None:
    import tf2onnx

    # tf2onnx logs each step on stdout and stderr; the parent reads only RESULT.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        tf2onnx.convert.from_tflite(
            str(model), opset=min(opset, MAX_TF2ONNX_OPSET), output_path=str(onnx)
        )


def run(model: Path, feeds_path: Path, out: Path) -> None:
    """The file's outputs, by tensor name, one sample at a time (shipped TFLite models have a
    fixed batch of one)."""
    from edge_sdk.runtime import _interpreter

    interpreter = _interpreter(model.read_bytes(), 2)
    interpreter.allocate_tensors()
    ins = interpreter.get_input_details()
    outs = interpreter.get_output_details()
    with np.load(feeds_path, allow_pickle=False) as npz:
        feeds = {k: npz[k] for k in npz.files}
    missing = [str(d["name"]) for d in ins if str(d["name"]) not in feeds]
    if missing:
        raise ValueError(
            f"the data has no array for input {', '.join(missing)} (it has {', '.join(feeds)})"
        )
    count = len(next(iter(feeds.values())))
    results: dict[str, list[np.ndarray]] = {str(d["name"]): [] for d in outs}
    for i in range(count):
        for d in ins:
            array = feeds[str(d["name"])][i : i + 1]
            interpreter.set_tensor(d["index"], np.ascontiguousarray(array, dtype=d["dtype"]))
        interpreter.invoke()
        for d in outs:
            results[str(d["name"])].append(np.array(interpreter.get_tensor(d["index"])))
    joined = {name: np.concatenate(arrays) for name, arrays in results.items()}
    np.savez(out, **joined)  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    command, *args = argv
    result = Path(args[-1])
    try:
        if command == "convert":
            convert(Path(args[0]), Path(args[1]), int(args[2]))
        elif command == "run":
            run(Path(args[0]), Path(args[1]), Path(args[2]))
        else:
            raise ValueError(f"unknown command {command}")
    except Exception as e:  # every failure becomes the parent's one line
        result.write_text(first_line(e))
        return 1
    result.write_text("ok")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main(sys.argv[1:]))
