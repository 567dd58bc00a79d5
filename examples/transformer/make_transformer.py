"""Build the ``transformer`` example: a small transformer-encoder classifier, exported to ONNX.

Why this exists: the ``digits`` CNN covers the convolution path; this model covers the
MatMul-heavy path (attention projections, feed-forward blocks, LayerNorm, Softmax) that
transformer models take through quantization. It trains briefly on scikit-learn's bundled 8x8
digits (nothing is downloaded), treating each of the 64 pixels as one token. It is sized so
that the MatMuls, not per-op overhead, dominate latency at batch 1, which is what makes the
float-vs-int8 comparison meaningful. The export is checked to contain plain MatMul/Gemm ops
rather than a fused attention op that onnxruntime's quantizer would skip.

Writes next to this script:

* ``model.onnx``: input ``input`` float32 [batch, 64, 1] with pixels in [0, 1],
  output ``logits`` float32 [batch, 10]; weights embedded in the single file.
* ``calibration.npz``: key ``input``, 200 training samples for static quantization.
* ``validation.npz``: keys ``input`` and ``labels`` (int64), the held-out test split.

Regenerate with ``pip install -e '.[examples]'`` then
``python examples/transformer/make_transformer.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import torch
from torch import nn

# Run as a script, so make examples/_shared.py importable from any working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _shared import check_accuracy, load_data, seed_everything, train, write_outputs

HERE = Path(__file__).resolve().parent
# Eight epochs leave this model seed-sensitive (91-96% test accuracy over the seeds tried);
# seed 1 gives 96%. The result is deterministic for a given torch version (pinned). The
# train/test split still uses _shared.SPLIT_SEED, the same split as examples/digits.
TORCH_SEED = 1
SEQ_LEN = 64
D_MODEL = 256
N_HEADS = 4
D_FF = 2048
N_LAYERS = 2
EPOCHS = 8
BATCH_SIZE = 64
LR = 1e-3
WEIGHT_DECAY = 1e-2
MAX_GRAD_NORM = 1.0
MIN_ACCURACY = 0.90
FUSED_OPS = {"Attention", "MultiHeadAttention", "SkipLayerNormalization", "FusedMatMul"}


class PixelTransformer(nn.Module):
    """Pixel tokens -> linear embedding + learned positions -> encoder -> mean-pool -> logits.

    Two pre-norm ``nn.TransformerEncoderLayer`` (d_model 256, 4 heads, feed-forward 2048, which
    is PyTorch's default width). At 64 tokens each weight is used 64 times per sample, so the
    MatMul work per op, and with it the int8 speed-up at batch 1, grows with the layer width.
    """

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(1, D_MODEL)
        # Unit-scale positions: a pixel token carries one scalar, so where it sits is most of
        # what distinguishes it; a small (0.02) init leaves the model near permutation-invariant
        # for the first epochs and it learns far more slowly.
        self.pos = nn.Parameter(torch.randn(1, SEQ_LEN, D_MODEL))
        layer = nn.TransformerEncoderLayer(
            d_model=D_MODEL,
            nhead=N_HEADS,
            dim_feedforward=D_FF,
            dropout=0.0,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=N_LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos)
        logits: torch.Tensor = self.head(self.norm(h.mean(dim=1)))
        return logits


def drop_noop_with_empty_axes(proto: onnx.ModelProto) -> None:
    """Remove the opset-18 ``noop_with_empty_axes`` attribute the 18->17 converter leaves behind.

    The converter moves ReduceMean's axes from an input back to an attribute but keeps this
    attribute, which opset 17 does not define. With explicit axes it has no effect, so drop it.
    """
    for node in proto.graph.node:
        if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
            kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
            if len(kept) != len(node.attribute):
                if not any(a.name == "axes" for a in kept):
                    raise SystemExit(f"{node.name}: cannot drop noop_with_empty_axes without axes")
                del node.attribute[:]
                node.attribute.extend(kept)


def fix_up_export(proto: onnx.ModelProto) -> None:
    """Run on the model after ``_shared.export_onnx``'s 18->17 conversion, before it is saved:
    drop the leftover attribute and check that attention stayed as plain MatMul ops."""
    drop_noop_with_empty_axes(proto)
    ops = {node.op_type for node in proto.graph.node}
    if ops & FUSED_OPS or "MatMul" not in ops:
        raise SystemExit(f"unexpected op set in export: {sorted(ops)}")


def main() -> None:
    seed_everything(TORCH_SEED)
    x_train, x_test, y_train, y_test = load_data((SEQ_LEN, 1))

    model = PixelTransformer()
    train(
        model,
        x_train,
        y_train,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        seed=TORCH_SEED,
        max_grad_norm=MAX_GRAD_NORM,
    )
    check_accuracy(model, x_test, y_test, MIN_ACCURACY)
    write_outputs(HERE, model, x_train, x_test, y_test, fix_up=fix_up_export)


if __name__ == "__main__":
    main()
