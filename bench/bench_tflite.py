"""TFLite benchmark: fp32, dynamic-range and full-integer artifacts of the digits CNN, run with
LiteRT on this host, timed in one process against the fp32 TFLite artifact (ratios only: this
machine is shared and noisy). Run: ``python bench/bench_tflite.py``.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from converters import PassContext, get_pass  # noqa: E402
from edge_sdk.data import load_npz  # noqa: E402
from edge_sdk.fidelity import accuracy, compare  # noqa: E402
from edge_sdk.onnx_model import load_source  # noqa: E402
from edge_sdk.ort_runtime import open_session  # noqa: E402
from edge_sdk.profiles import resolve_profile  # noqa: E402
from edge_sdk.runtime import OnnxModel, TFLiteModel, evaluate  # noqa: E402
from edge_sdk.timing import measure_interleaved  # noqa: E402

THREADS = 2
VARIANTS = {
    "fp32": "tflite_fp32",
    "dynamic-range int8": "tflite_int8_dynamic",
    "full-integer int8 (raspberry-pi-5)": "tflite_int8_full",
}


def main() -> None:
    example = REPO / "examples" / "digits"
    source = example / "model.onnx"
    calib = load_npz(example / "calibration.npz")
    valid = load_npz(example / "validation.npz")
    _, info = load_source(source)
    context_profile = resolve_profile("raspberry-pi-5")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        context = PassContext(context_profile, work, calib.inputs, {})
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
        {n: functools.partial(m.run, sample) for n, m in models.items()}, seconds=4.0, rounds=10
    )
    reference = evaluate(models["ONNX float (onnxruntime)"], valid.inputs)
    base, base_size = timings["fp32"].p50_ms, sizes["fp32"]
    print(
        "| digits artifact | p50 ms | speed vs TFLite fp32 | smaller than fp32 by | accuracy "
        "| top-1 agree with ONNX float |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, model in models.items():
        outputs = evaluate(model, valid.inputs)
        acc = accuracy(outputs, valid.labels) if valid.labels is not None else None
        top1 = compare(reference, outputs).top1_agreement
        print(
            f"| {name} | {timings[name].p50_ms:.3f} | {base / timings[name].p50_ms:.2f}x "
            f"| {base_size / sizes[name]:.2f}x | {acc:.2%} | {top1:.2%} |"
        )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
