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

import sys
from pathlib import Path

import torch
from torch import nn

# Run as a script, so make examples/_shared.py importable from any working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _shared import check_accuracy, load_data, seed_everything, train, write_outputs

HERE = Path(__file__).resolve().parent
SEED = 0  # torch init and batch order (the data split uses _shared.SPLIT_SEED, also 0)
EPOCHS = 15
BATCH_SIZE = 64
LR = 2e-3
WEIGHT_DECAY = 1e-4
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


def main() -> None:
    seed_everything(SEED)
    x_train, x_test, y_train, y_test = load_data((1, 8, 8))

    model = DigitsCNN()
    train(
        model,
        x_train,
        y_train,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        seed=SEED,
    )
    check_accuracy(model, x_test, y_test, MIN_ACCURACY)
    write_outputs(HERE, model, x_train, x_test, y_test)


if __name__ == "__main__":
    main()
