"""Code shared by the example-model scripts (``examples/*/make_*.py``).

Why this exists: every example trains on the same scikit-learn digits split with the same loop
and exports through the same dynamo -> opset-17 path. Keeping that in one place keeps the
examples consistent (same split, same calibration samples, same export checks) and keeps each
script down to what is specific to its model: architecture, hyper-parameters, export fix-ups.
The scripts are run directly, so they put this folder on ``sys.path`` before importing it.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnx.version_converter
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[np.int64]

SPLIT_SEED = 0  # train/test split and calibration sampling; the same for every example
TEST_FRACTION = 0.2
N_CALIBRATION = 200
EXPORT_OPSET = 18
OPSET = 17
NUM_THREADS = 2


def seed_everything(seed: int) -> None:
    """Seed every RNG, force deterministic kernels and fix the thread count."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # CPU reductions can depend on the thread count, so pin it for reproducible weights.
    torch.set_num_threads(NUM_THREADS)


def load_data(
    sample_shape: tuple[int, ...],
) -> tuple[FloatArray, FloatArray, LabelArray, LabelArray]:
    """Return (x_train, x_test, y_train, y_test); x is float32 [N, *sample_shape] in [0, 1]."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, *sample_shape)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return x_train, x_test, y_train, y_test


def train(
    model: nn.Module,
    x: FloatArray,
    y: LabelArray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    max_grad_norm: float | None = None,
) -> None:
    """AdamW with a one-cycle schedule over shuffled mini-batches; leaves ``model`` in eval mode.

    ``seed`` drives the batch order; ``max_grad_norm``, if given, clips gradients to that norm.
    """
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * ((len(x) + batch_size - 1) // batch_size)
    )
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
    model.eval()


def accuracy(model: nn.Module, x: FloatArray, y: LabelArray) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def check_accuracy(model: nn.Module, x: FloatArray, y: LabelArray, minimum: float) -> None:
    """Print the test accuracy and stop if it is below ``minimum``."""
    acc = accuracy(model, x, y)
    print(f"test accuracy: {acc:.4f} ({len(y)} samples)")
    if acc < minimum:
        raise SystemExit(f"accuracy {acc:.4f} is below the required {minimum}")


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    fix_up: Callable[[onnx.ModelProto], None] | None = None,
) -> None:
    """Export with the dynamo exporter, convert to ``OPSET`` and embed the weights in ``path``.

    The dynamo exporter's lowest native opset is 18; asking it for 17 directly converts before
    constant folding, which fails on some graphs (ReduceMean's axes input in the transformer),
    so every example exports 18 and converts after loading. ``fix_up``, if given, edits the
    converted model in place before it is saved and checked.
    """
    batch = torch.export.Dim("batch")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(tmp_path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=EXPORT_OPSET,
            dynamo=True,
            external_data=False,
        )
        proto = onnx.load(str(tmp_path), load_external_data=True)
    proto = onnx.version_converter.convert_version(proto, OPSET)
    if fix_up is not None:
        fix_up(proto)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def write_outputs(
    out_dir: Path,
    model: nn.Module,
    x_train: FloatArray,
    x_test: FloatArray,
    y_test: LabelArray,
    fix_up: Callable[[onnx.ModelProto], None] | None = None,
) -> None:
    """Write ``model.onnx``, ``calibration.npz`` and ``validation.npz`` into ``out_dir``."""
    model_path = out_dir / "model.onnx"
    # Export from a batch of 2: torch.export specializes a size-1 dim to a constant, which
    # would lose the dynamic ``batch`` dim.
    export_onnx(model, torch.from_numpy(x_test[:2]), model_path, fix_up)
    rng = np.random.default_rng(SPLIT_SEED)
    calib_idx = np.sort(rng.choice(len(x_train), size=N_CALIBRATION, replace=False))
    np.savez(out_dir / "calibration.npz", input=x_train[calib_idx])
    np.savez(out_dir / "validation.npz", input=x_test, labels=y_test)
    print(f"wrote {model_path} ({model_path.stat().st_size} bytes)")
