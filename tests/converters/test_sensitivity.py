"""The int8 damage ranking on a real third-party model: Silero VAD (from its wheel), whose
worst int8 damage is not at a weighted layer but at its STFT's power spectrum (an Add of the
squared real and imaginary parts, quantized, then a square root)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

import corpus
from converters.calibration import ArrayDataReader
from converters.sensitivity import WEIGHTED_OPS, rank_sensitive_nodes


def test_damage_outside_weighted_layers_is_blamed_on_the_quantized_node(tmp_path: Path) -> None:
    m = corpus.get("silero-vad")
    with np.load(m.write(tmp_path / "cal.npz", 16, 0)) as npz:
        calibration = {k: npz[k] for k in npz.files if k != "labels"}
    qdq = tmp_path / "qdq.onnx"
    quantize_static(
        str(m.path()),
        str(qdq),
        ArrayDataReader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    ranked = rank_sensitive_nodes(m.path(), qdq, calibration, tmp_path, samples=8)
    kinds = {n.name: n.op_type for n in onnx.load(str(m.path())).graph.node}
    # The loss shows at the Sqrt (not quantized); the Q/DQ pair that causes it is on the
    # Add's output, so the Add is what keeping in float helps.
    assert ranked[0][0] == "/stft/Add", ranked[:4]
    assert ranked[0][1] > 10.0  # dB lost: far above any layer's
    assert "/stft/Sqrt" not in dict(ranked)
    assert {kinds[name] for name, _ in ranked[1:3]} <= WEIGHTED_OPS
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
