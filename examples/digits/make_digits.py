"""Build the ``digits`` example: a small CNN for scikit-learn's 8x8 digits, exported to ONNX.

Why this exists: tests, benchmarks and the README need a real, trained vision model that
regenerates offline in well under a minute on a laptop CPU (the digits data ships inside
scikit-learn, so nothing is downloaded). The convolutions are deliberately wider than the
task needs so that convolution compute, not per-op overhead, dominates latency at batch 1;
that is what makes the float-vs-int8 speed and size comparison meaningful on this model.

Writes next to this script:

* ``model.onnx``: input ``input`` float32 [batch, 1, 8, 8] with pixels in [0, 1],
  output ``logits`` float32 [batch, 10]; weights embedded in the single file.
* ``calibration.npz``: key ``input``, 200 training samples for static quantization.
* ``validation.npz``: keys ``input`` and ``labels`` (int64), the held-out test split.

Regenerate with ``pip install -e '.[examples]'`` then ``python examples/digits/make_digits.py``.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0
TEST_FRACTION = 0.2
N_CALIBRATION = 200
EPOCHS = 15
BATCH_SIZE = 64
LR = 2e-3
EXPORT_OPSET = 18
OPSET = 17
MIN_ACCURACY = 0.97


class DigitsCNN(nn.Module):
    """Three 3x3 convolutions (128, 288, 288 channels) on the full 8x8 grid, a 4x4 max-pool,
    then a small MLP head. Most of the compute sits in the two wide convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 128, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(128, 288, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(288, 288, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(4),  # 8x8 -> 2x2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(288 * 2 * 2, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, x_test, y_train, y_test); x is float32 [N, 1, 8, 8] in [0, 1]."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y
    )
    return x_train, x_test, y_train, y_test


def train(model: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LR, total_steps=EPOCHS * ((len(x) + BATCH_SIZE - 1) // BATCH_SIZE)
    )
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export with the dynamo exporter, convert to ``OPSET`` and embed the weights in ``path``.

    The dynamo exporter's lowest native opset is 18 and its own down-conversion fails on some
    graphs (see examples/transformer), so both examples export 18 and convert afterwards.
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
    onnx.save_model(proto, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def main() -> None:
    seed_everything(SEED)
    torch.set_num_threads(2)
    x_train, x_test, y_train, y_test = load_data()

    model = DigitsCNN()
    train(model, x_train, y_train)
    acc = accuracy(model, x_test, y_test)
    print(f"test accuracy: {acc:.4f} ({len(y_test)} samples)")
    if acc < MIN_ACCURACY:
        raise SystemExit(f"accuracy {acc:.4f} is below the required {MIN_ACCURACY}")

    # Export from a batch of 2: torch.export specializes a size-1 dim to a constant, which
    # would lose the dynamic ``batch`` dim.
    export_onnx(model, torch.from_numpy(x_test[:2]), HERE / "model.onnx")
    rng = np.random.default_rng(SEED)
    calib_idx = np.sort(rng.choice(len(x_train), size=N_CALIBRATION, replace=False))
    np.savez(HERE / "calibration.npz", input=x_train[calib_idx])
    np.savez(HERE / "validation.npz", input=x_test, labels=y_test)
    print(f"wrote {HERE / 'model.onnx'} ({(HERE / 'model.onnx').stat().st_size} bytes)")


if __name__ == "__main__":
    main()
