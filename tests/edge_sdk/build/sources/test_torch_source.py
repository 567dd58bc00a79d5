"""A PyTorch module built straight from Python, for an ONNX and a TFLite profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_sdk.build.sources.torch import build_torch
from edge_sdk.core.bundle import read_bundle
from edge_sdk.runtime import evaluate, load_bundle


class TinyNet(torch.nn.Module):  # type: ignore[misc, name-defined]
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 32, 3, padding=1)
        self.head = torch.nn.Linear(32 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("profile", ["x86-64-vnni", "raspberry-pi-4"])
def test_module_builds_and_matches_itself(profile: str, digits: Path, tmp_path: Path) -> None:
    module = TinyNet()
    with np.load(digits / "validation.npz") as v:
        x = v["input"][:64]
    result = build_torch(
        module,
        (torch.from_numpy(x[:2]),),
        profile=profile,
        out=tmp_path,
        output_names=["logits"],
        calibration=digits / "calibration.npz",
        timing_seconds=0.3,
    )
    assert result.report["name"] == "tinynet" and result.report["profile"] == profile
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    bundle = read_bundle(result.bundle_path)
    if (
        result.report["int8_arithmetic"]["judged_by"] == "exact"
        and bundle.manifest.runtime == "onnx"
    ):
        # A host that does not compute int8 as the target does (x86 without VNNI for
        # x86-64-vnni: its fused u8s8 kernels saturate) runs the artifact as the target would
        # only with Q/DQ left unfused: the arithmetic the build judged it by.
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(bundle.artifact, options, providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": x})
    else:
        (got,) = evaluate(load_bundle(bundle, threads=2), {"input": x})
    agreement = np.mean(got.argmax(1) == expected.argmax(1))
    assert agreement >= 0.95
