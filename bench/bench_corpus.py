"""Build quality on the corpus of third-party models (corpus/, issue 12), in one run.

Per model and profile: the candidate the build chose, its speed and size against the float model,
its fidelity (cosine, top-1 agreement) and accuracy (where the data has labels), the most faithful
int8 candidate the build measured, and the same figures for onnxruntime's stock
``quantize_static`` at its defaults on the same calibration data; plus the build's wall time.
Speeds are ratios against the float model timed in the same interleaved rounds (this machine is
shared; absolute times drift). The .tflite models are timed as shipped with ``edge-sdk bench``'s
code, then built from the .tflite file like the others; their float model for the ratios and
the stock recipe is tf2onnx's ONNX conversion of the file.

Run: ``python -m bench.bench_corpus`` (all models, profiles x86-64-vnni and raspberry-pi-4);
``--models ppocr-cls,yolov8n --profiles x86-64,jetson-orin`` for a part.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import corpus
from converters.calibration import ArrayDataReader
from edge_sdk.build.benchmark import bench
from edge_sdk.build.data import load_npz
from edge_sdk.build.pipeline import BuildRequest, build
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.fidelity import accuracy, compare
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.errors import EdgeSdkError
from edge_sdk.runtime import Model, OnnxModel, evaluate, load_bundle
from edge_sdk.runtime.ort import open_session
from edge_sdk.runtime.timing import measure_interleaved

REPO = Path(__file__).resolve().parent.parent

THREADS = 1  # one thread: spinning worker threads on a shared, loaded host distort ratios
PROFILES = ("x86-64-vnni", "raspberry-pi-4")


def _stock(source: Path, calibration: dict[str, np.ndarray], work: Path) -> Path | str:
    """onnxruntime's recipe as its docs give it: pre-process, then quantize_static defaults."""
    pre, out = work / "stock-pre.onnx", work / "stock.onnx"
    # onnxruntime's shape inference drops copies of a model's weights (<uuid>.data) into the
    # working directory when it gives up on a graph (yolov8n): keep them in the scratch folder.
    with contextlib.chdir(work):
        return _stock_in(source, calibration, pre, out)


def _stock_in(source: Path, calibration: dict[str, np.ndarray], pre: Path, out: Path) -> Path | str:
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        # Symbolic shape inference asserts on some real graphs (dynamic H/W): then the
        # pre-processing step without it, as onnxruntime's docs suggest.
        try:
            quant_pre_process(str(source), str(pre))
        except Exception:
            quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), ArrayDataReader(calibration))
    except Exception as e:  # the baseline's own failure is a figure, not a crash
        text = str(e).strip() or type(e).__name__
        return f"failed: {text.splitlines()[0][:120]}"
    return out


def _best_int8(report: dict[str, Any]) -> str:
    int8 = [
        c for c in report["candidates"] if c["precision"].startswith("int8") and c.get("fidelity")
    ]
    if not int8:
        return "-"
    best = max(int8, key=lambda c: c["fidelity"]["cosine"])
    return f"{best.get('name', best['precision'])} {best['fidelity']['cosine']:.4f}"


def bench_onnx(
    m: corpus.CorpusModel, profiles: list[str], work: Path, seconds: float, samples: int
) -> list[dict[str, Any]]:
    source = m.path()
    cal_path = m.write(work / "cal.npz", samples, 0)
    val_path = m.write(work / "val.npz", samples, 1)
    calib, valid = load_npz(cal_path), load_npz(val_path)
    # A .tflite source's float model, for timing and the stock recipe, is tf2onnx's conversion
    # (the build makes the same one and checks it against the file); the builds take the file.
    reference_model = float_onnx(source, work) if m.format == "tflite" else source
    models: dict[str, Model] = {"float": OnnxModel(open_session(reference_model, threads=THREADS))}
    sizes = {"float": source.stat().st_size}
    rows: dict[str, dict[str, Any]] = {}
    stock = _stock(reference_model, dict(calib.inputs), work)
    if isinstance(stock, Path):
        models["stock"] = OnnxModel(open_session(stock, threads=THREADS))
        sizes["stock"] = stock.stat().st_size
    for profile in profiles:
        row: dict[str, Any] = {"model": m.name, "profile": profile}
        started = time.perf_counter()
        try:
            result = build(
                BuildRequest(
                    model=source,
                    profile=resolve_profile(profile),
                    out=work / profile,
                    calibration=cal_path,
                    validation=val_path,
                    name=m.name,
                    timing_seconds=0.5,
                    first_output=m.first_output,
                )
            )
        except EdgeSdkError as e:
            row.update(chosen=f"build failed: {e}", build_s=time.perf_counter() - started)
            rows[profile] = row
            continue
        row["build_s"] = time.perf_counter() - started
        r = result.report
        b = read_bundle(result.bundle_path)
        models[profile] = load_bundle(b, threads=THREADS)
        sizes[profile] = len(b.artifact)
        row.update(
            chosen=f"{r['runtime']} {r['precision']} ({r['speedup']:.2f}x in the build)",
            best_int8=_best_int8(r),
            routes=len(r["candidates"]),
        )
        rows[profile] = row
    sample = {k: v[:1] for k, v in valid.inputs.items()}
    timings = measure_interleaved(
        {name: functools.partial(model.run, sample) for name, model in models.items()},
        seconds=seconds,
        rounds=10,
    )
    reference = evaluate(models["float"], valid.inputs)

    def figures(name: str) -> dict[str, Any]:
        outputs = evaluate(models[name], valid.inputs)
        fid = compare(reference, outputs, m.first_output)
        return {
            "speedup": timings["float"].p50_ms / timings[name].p50_ms,
            "smaller": sizes["float"] / sizes[name],
            "cosine": fid.cosine,
            "top1": fid.top1_agreement,
            "accuracy": accuracy(outputs, valid.labels, m.first_output)
            if valid.labels is not None
            else None,
        }

    float_acc = (
        accuracy(reference, valid.labels, m.first_output) if valid.labels is not None else None
    )
    stock_figures = figures("stock") if "stock" in models else None
    out = []
    for profile, row in rows.items():
        if profile in models:
            row.update(figures(profile))
        row["float_accuracy"] = float_acc
        row["stock"] = stock_figures if stock_figures else stock
        out.append(row)
    return out


def float_onnx(source: Path, work: Path) -> Path:
    from edge_sdk.build.sources.tflite_child import convert

    out = work / "float.onnx"
    convert(source, out, 17)
    return out


def bench_tflite(m: corpus.CorpusModel, work: Path, seconds: float) -> list[dict[str, Any]]:
    inputs = m.write(work / "one.npz", 1, 0)
    r = bench(m.path(), threads=THREADS, seconds=seconds, input_shapes={}, inputs=inputs)
    return [
        {
            "model": m.name,
            "profile": "(as shipped)",
            "chosen": f"tflite float as shipped, p50 {r['latency_ms']['p50']:.2f} ms "
            "(edge-sdk bench)",
        }
    ]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def print_header() -> None:
    print(
        "| model | profile | chosen | speed vs float | smaller by | cosine | accuracy (float) "
        "| best int8 cosine | ORT stock: speed, smaller, cosine, accuracy | build s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---|---|---:|", flush=True)


def print_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if "speedup" not in r:
            build_s = f"{r['build_s']:.0f}" if "build_s" in r else "-"
            print(
                f"| {r['model']} | {r['profile']} | {r['chosen']} | | | | | | | {build_s} |",
                flush=True,
            )
            continue
        s = r["stock"]
        stock = (
            f"{s['speedup']:.2f}x, {s['smaller']:.1f}x, {s['cosine']:.4f}, {_pct(s['accuracy'])}"
            if isinstance(s, dict)
            else str(s)
        )
        acc = (
            f"{_pct(r['accuracy'])} ({_pct(r['float_accuracy'])})"
            if r["accuracy"] is not None
            else "-"
        )
        print(
            f"| {r['model']} | {r['profile']} | {r['chosen']} | {r['speedup']:.2f}x "
            f"| {r['smaller']:.1f}x | {r['cosine']:.4f} | {acc} | {r['best_int8']} | {stock} "
            f"| {r['build_s']:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(m.name for m in corpus.MODELS))
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model")
    parser.add_argument("--samples", type=int, default=64, help="calibration/validation samples")
    args = parser.parse_args()
    profiles = [p for p in args.profiles.split(",") if p]
    print_header()
    started = time.perf_counter()
    for name in args.models.split(","):
        m = corpus.get(name)
        with tempfile.TemporaryDirectory() as tmp:
            if m.format == "tflite":
                print_rows(bench_tflite(m, Path(tmp), args.seconds))
            print_rows(bench_onnx(m, profiles, Path(tmp), args.seconds, args.samples))
        print(
            f"# {name} done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True
        )


if __name__ == "__main__":
    main()
