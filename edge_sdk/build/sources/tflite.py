"""TFLite models (.tflite) as build sources: converted to ONNX by tf2onnx (its TFLite route),
checked against the file itself run in LiteRT on the build's data, then the ordinary ONNX
route. For a TFLite profile, onnx2tf makes TFLite of it again, quantized as the profile asks.
Both native steps run in a child process (``tflite_child``): TensorFlow Lite's interpreter,
which tf2onnx opens the file in, crashes on some damaged files.

Models are often shipped only as float .tflite files (MediaPipe's face detector and hand
landmark model, for instance); this is how they get an int8 artifact for any profile.
Tensor names are the file's own (tf2onnx keeps them), so data for the .tflite file feeds the
build as it is.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_sdk.build.sources import Converted, agreement, check_data, require
from edge_sdk.core.userfile import MIB, read_user_file
from edge_sdk.errors import BuildError, ModelFileError

if TYPE_CHECKING:
    from edge_sdk.build.pipeline import BuildRequest

EXTRA = "tflite"
WHAT = "TFLite sources"
MAX_TFLITE = 2048 * MIB
# A .tflite file starts with a FlatBuffer root offset, then this file identifier.
TFLITE_MAGIC = b"TFL3"
# A real model converts in seconds; a file that keeps tf2onnx or LiteRT busy longer is stuck.
CHILD_TIMEOUT = 600.0


def read_tflite(path: Path) -> bytes:
    """The bytes of a .tflite file (bounded), or one line when it is not one (also what
    ``edge-sdk bench`` reads a .tflite with)."""
    raw = read_user_file(path, "model file", MAX_TFLITE, ModelFileError)
    if raw[4:8] != TFLITE_MAGIC:
        raise ModelFileError(f"{path} is not a TFLite model (no TFL3 identifier); pass a .tflite")
    return raw


def _in_child(path: Path, command: str, *args: str) -> None:
    """Run ``tflite_child`` in its own process; what it could not do is one BuildError line,
    a crash or a hang included."""
    timeout = CHILD_TIMEOUT
    result = Path(args[-1])
    package_root = Path(__file__).resolve().parents[3]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(package_root), env.get("PYTHONPATH", "")) if p
    )
    what = "tf2onnx" if command == "convert" else "LiteRT"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edge_sdk.build.sources.tflite_child", command, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise BuildError(
            f"{path}: {what} did not finish within {timeout:g} s; the file is damaged or "
            "too large for this host"
        ) from e
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-done.returncode}"
        raise BuildError(
            f"{path}: {what} crashed on it ({name}); the file is damaged, or not a model "
            f"{what} can read"
        )
    line = result.read_text() if result.is_file() else ""
    if done.returncode != 0 or line != "ok":
        doing = "convert it to ONNX" if command == "convert" else "run it on the data"
        raise BuildError(f"{path}: {what} cannot {doing}: {line or f'exit {done.returncode}'}")


def convert_tflite(request: BuildRequest, workdir: Path) -> Converted:
    from edge_sdk.build.onnx_model import load_source
    from edge_sdk.runtime.ort import open_session

    path = Path(request.model)
    raw = read_tflite(path)
    if importlib.util.find_spec("tf2onnx") is None:  # importing it here would load TensorFlow
        require("tf2onnx", EXTRA, WHAT)  # the one line naming the extra to install
    checked = workdir / "source.tflite"  # the bytes read and checked, not the path again
    checked.write_bytes(raw)
    onnx = workdir / f"{path.stem}.onnx"
    _in_child(
        path,
        "convert",
        str(checked),
        str(onnx),
        str(request.profile.opset),
        str(workdir / "convert.result"),
    )
    _, described = load_source(onnx)
    data = check_data(request, described.inputs)
    feeds = {s.name: data.inputs[s.name] for s in described.inputs}
    np.savez(workdir / "feeds.npz", **feeds)  # type: ignore[arg-type]
    _in_child(
        path,
        "run",
        str(checked),
        str(workdir / "feeds.npz"),
        str(workdir / "expected.npz"),
        str(workdir / "run.result"),
    )
    with np.load(workdir / "expected.npz", allow_pickle=False) as npz:
        expected = {k: npz[k] for k in npz.files}
    names = [s.name for s in described.outputs]
    unmatched = [n for n in names if n not in expected]
    if unmatched:
        raise BuildError(
            f"{path}: the ONNX conversion's outputs {', '.join(unmatched)} are not the file's "
            f"({', '.join(expected)})"
        )
    count = len(next(iter(feeds.values())))
    session = open_session(onnx, threads=2)
    runs = [session.run(names, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(count)]
    got = [np.concatenate([r[j] for r in runs]) for j in range(len(names))]
    notes = (
        "converted from TFLite to ONNX by tf2onnx",
        agreement(
            str(path), "the .tflite file in LiteRT", [expected[n] for n in names], got, request
        ),
    )
    return Converted(onnx=onnx, name=path.stem, source=str(path), notes=notes)
