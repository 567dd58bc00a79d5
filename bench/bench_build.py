"""Build benchmark: edge-sdk's profile-tuned artifacts against onnxruntime's quantizers at their
defaults, for the digits CNN and the transformer encoder, all timed in this one process.

Every figure is a ratio against the float model measured in the same interleaved rounds, because
this machine is shared and absolute times drift. Run: ``python -m bench.bench_build``.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from converters.calibration import ArrayDataReader
from edge_sdk.build.data import load_npz
from edge_sdk.build.pipeline import BuildRequest, build
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.fidelity import accuracy, compare
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.runtime import OnnxModel, evaluate
from edge_sdk.runtime.ort import graph_level_for, open_session
from edge_sdk.runtime.timing import measure_interleaved

REPO = Path(__file__).resolve().parent.parent

THREADS = 2  # this machine's cores


def bench_model(example: Path, work: Path, seconds: float) -> list[dict[str, object]]:
    source = example / "model.onnx"
    calib = load_npz(example / "calibration.npz")
    valid = load_npz(example / "validation.npz")
    artifacts: dict[str, Path] = {"float (source)": source}
    levels: dict[str, str] = {}

    pre = work / "pre.onnx"
    quant_pre_process(str(source), str(pre))
    artifacts["ORT quantize_dynamic (defaults)"] = work / "dyn.onnx"
    quantize_dynamic(str(pre), str(work / "dyn.onnx"))
    artifacts["ORT quantize_static (defaults)"] = work / "static.onnx"
    quantize_static(str(pre), str(work / "static.onnx"), ArrayDataReader(calib.inputs))

    build_seconds: dict[str, float] = {}
    for profile in ("x86-64-vnni", "jetson-orin"):
        started = time.perf_counter()
        result = build(
            BuildRequest(
                model=source,
                profile=resolve_profile(profile),
                out=work / profile,
                calibration=example / "calibration.npz",
                validation=example / "validation.npz",
            )
        )
        build_seconds[profile] = time.perf_counter() - started
        path = work / f"{profile}.onnx"
        path.write_bytes(read_bundle(result.bundle_path).artifact)
        label = f"edge-sdk {profile} ({result.report['precision']})"
        if profile == "jetson-orin":
            label += " on CPU"
        artifacts[label] = path
        levels[label] = graph_level_for(result.report["precision"])

    sessions = {
        name: OnnxModel(open_session(path, threads=THREADS, graph_level=levels.get(name, "all")))
        for name, path in artifacts.items()
    }
    sample = {k: v[:1] for k, v in valid.inputs.items()}
    timings = measure_interleaved(
        {name: functools.partial(s.run, sample) for name, s in sessions.items()},
        seconds=seconds,
        rounds=10,
    )
    reference = evaluate(sessions["float (source)"], valid.inputs)
    base = timings["float (source)"].p50_ms
    base_bytes = source.stat().st_size
    rows = []
    for name, session in sessions.items():
        outputs = evaluate(session, valid.inputs)
        fid = compare(reference, outputs)
        acc = accuracy(outputs, valid.labels) if valid.labels is not None else None
        profile = next((p for p in build_seconds if p in name), None)
        rows.append(
            {
                "model": example.name,
                "variant": name,
                "p50_ms": timings[name].p50_ms,
                "speedup": base / timings[name].p50_ms,
                "size_ratio": base_bytes / artifacts[name].stat().st_size,
                "accuracy": acc,
                "top1": fid.top1_agreement,
                "cosine": fid.cosine,
                "build_s": build_seconds.get(profile) if profile else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per model")
    args = parser.parse_args()
    rows = []
    for example in ("digits", "transformer"):
        with tempfile.TemporaryDirectory() as tmp:
            rows += bench_model(REPO / "examples" / example, Path(tmp), args.seconds)
    print(
        "| model | variant | p50 ms | speed vs float | smaller by | accuracy | top-1 agree "
        "| cosine | build s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
        top1 = "-" if r["top1"] is None else f"{r['top1']:.2%}"
        build_s = "-" if r["build_s"] is None else f"{r['build_s']:.1f}"
        print(
            f"| {r['model']} | {r['variant']} | {r['p50_ms']:.3f} | {r['speedup']:.2f}x "
            f"| {r['size_ratio']:.2f}x | {acc} | {top1} | {r['cosine']:.5f} | {build_s} |"
        )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
