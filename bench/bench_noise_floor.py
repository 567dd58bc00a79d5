"""How far each corpus model's float outputs move under 8-bit noise on its input: a yardstick
for how much fidelity int8 arithmetic can keep on the corpus data.

int8 rounds every activation inside the model to 256 levels. The yardstick is the float model
against itself with uniform noise of half a step of 256 levels across the input's range in the
data, on the first input (the image or the audio; a state input keeps its real values). It is
not a bound: the rounding inside is deterministic, and an input that is already 8-bit loses
nothing at the input itself. But a model whose outputs leave the profiles' budget under noise of
half a grey level is that sensitive on this data, and int8 rounds dozens of tensors as coarsely.

Per model, and per output: the float model against itself with that noise, by the build's own
fidelity measure (``edge_sdk.core.fidelity.compare``, with the model's ``--first-output``).

Run: ``python -m bench.bench_noise_floor`` (all models; ``--models NAME,...`` for a part).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import corpus
from bench.bench_corpus import float_onnx
from edge_sdk.build.data import load_npz
from edge_sdk.core.fidelity import compare
from edge_sdk.runtime import OnnxModel, evaluate
from edge_sdk.runtime.ort import open_session

LEVELS = 256


def with_input_noise(
    inputs: dict[str, np.ndarray], name: str, seed: int
) -> tuple[dict[str, np.ndarray], float]:
    """``inputs`` with half a step of 256 levels of uniform noise on ``name``, and the step."""
    x = inputs[name]
    step = float(x.max() - x.min()) / (LEVELS - 1)
    noise = np.random.default_rng(seed).uniform(-step / 2, step / 2, x.shape)
    return {**inputs, name: (x + noise).astype(x.dtype)}, step


def floor(m: corpus.CorpusModel, work: Path, samples: int) -> str:
    source = float_onnx(m.path(), work) if m.format == "tflite" else m.path()
    valid = load_npz(m.write(work / "val.npz", samples, 1))
    model = OnnxModel(open_session(source, threads=2))
    reference = evaluate(model, valid.inputs)
    first = next(iter(valid.inputs))
    noisy, step = with_input_noise(dict(valid.inputs), first, seed=0)
    moved = evaluate(model, noisy)
    whole = compare(reference, moved, m.first_output)
    per_output = ", ".join(
        f"{compare([r], [c], m.first_output).cosine:.4f}"
        for r, c in zip(reference, moved, strict=True)
    )
    top1 = "-" if whole.top1_agreement is None else f"{whole.top1_agreement:.1%}"
    return f"| {m.name} | {first} | {step:.3g} | {whole.cosine:.4f} | {per_output} | {top1} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(m.name for m in corpus.MODELS))
    parser.add_argument("--samples", type=int, default=32, help="validation samples")
    args = parser.parse_args()
    print(
        "| model | noisy input | noise step | float vs float+noise, cosine | per output "
        "| top-1 agreement |"
    )
    print("|---|---|---:|---:|---|---:|", flush=True)
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            print(floor(corpus.get(name), Path(tmp), args.samples), flush=True)


if __name__ == "__main__":
    main()
