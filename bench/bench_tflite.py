"""TFLite benchmark: fp32, dynamic-range and full-integer artifacts of the digits CNN and of
nudenet's YOLOv8n (calibrated on scikit-learn's photographs), run with
LiteRT on this host, timed in one process against the fp32 TFLite artifact (ratios only: this
machine is shared and noisy). Run: ``python -m bench.bench_tflite``.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from converters import PassContext, get_pass
from edge_sdk.build.data import load_npz
from edge_sdk.build.onnx_model import load_source
from edge_sdk.core.fidelity import accuracy, compare
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.runtime import OnnxModel, TFLiteModel, evaluate
from edge_sdk.runtime.ort import open_session
from edge_sdk.runtime.timing import measure_interleaved

REPO = Path(__file__).resolve().parent.parent

THREADS = 2
VARIANTS = {
    "fp32": "tflite_fp32",
    "dynamic-range int8": "tflite_int8_dynamic",
    "full-integer int8 (raspberry-pi-5)": "tflite_int8_full",
}


def bench_model(
    name: str, source: Path, calibration: Path, validation: Path, seconds: float
) -> list[str]:
    calib = load_npz(calibration)
    valid = load_npz(validation)
    _, info = load_source(source)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        context = PassContext(resolve_profile("raspberry-pi-5"), work, calib.inputs, {})
        get_pass("opset")(source, work / "a.onnx", context)
        get_pass("optimize")(work / "a.onnx", work / "b.onnx", context)
        get_pass("onnx2tf")(work / "b.onnx", work / "saved_model", context)
        models: dict[str, OnnxModel | TFLiteModel] = {
            "ONNX float (onnxruntime)": OnnxModel(open_session(source, threads=THREADS))
        }
        sizes = {"ONNX float (onnxruntime)": source.stat().st_size}
        for label, pass_name in VARIANTS.items():
            path = work / f"{pass_name}.tflite"
            get_pass(pass_name)(work / "saved_model", path, context)
            sizes[label] = path.stat().st_size
            models[label] = TFLiteModel(
                path.read_bytes(), threads=THREADS, inputs=info.inputs, outputs=info.outputs
            )
    sample = valid.sample(0)
    timings = measure_interleaved(
        {n: functools.partial(m.run, sample) for n, m in models.items()}, seconds=seconds, rounds=10
    )
    reference = evaluate(models["ONNX float (onnxruntime)"], valid.inputs)
    base, base_size = timings["fp32"].p50_ms, sizes["fp32"]
    rows = []
    for label, model in models.items():
        outputs = evaluate(model, valid.inputs)
        acc = accuracy(outputs, valid.labels) if valid.labels is not None else None
        fid = compare(reference, outputs)
        rows.append(
            f"| {name} | {label} | {timings[label].p50_ms:.3f} | "
            f"{base / timings[label].p50_ms:.2f}x | {base_size / sizes[label]:.2f}x | "
            f"{'-' if acc is None else f'{acc:.2%}'} | "
            f"{'-' if fid.top1_agreement is None else f'{fid.top1_agreement:.2%}'} | "
            f"{fid.cosine:.5f} |"
        )
    return rows


def main() -> None:
    digits = REPO / "examples" / "digits"
    rows = bench_model(
        "digits", digits / "model.onnx", digits / "calibration.npz", digits / "validation.npz", 4.0
    )
    from testing.factories import photo_crops, yolov8n_path

    with tempfile.TemporaryDirectory() as tmp:
        cal = photo_crops(Path(tmp) / "cal.npz", 32, seed=0)
        val = photo_crops(Path(tmp) / "val.npz", 16, seed=1)
        rows += bench_model("YOLOv8n 320", yolov8n_path(), cal, val, 8.0)
    print(
        "| model | artifact | p50 ms | speed vs TFLite fp32 | smaller than fp32 by | accuracy "
        "| top-1 agree with ONNX float | cosine vs ONNX float |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
