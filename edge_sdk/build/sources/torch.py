"""PyTorch modules as build sources, through the Python API: export to ONNX with PyTorch's own
exporter, then the ordinary ONNX route, so users with torch models need no extra step.

    from edge_sdk.build.sources.torch import build_torch
    result = build_torch(module, (example,), profile="raspberry-pi-5", out=Path("out"),
                         calibration=Path("calib.npz"))
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_sdk.build.pipeline import BuildRequest, BuildResult, Progress, build
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.errors import BuildError, UnsupportedError

# The dynamo exporter's native opset; the build's opset pass then takes the model to the
# profile's opset.
EXPORT_OPSET = 18


def export_torch(
    module: Any,
    example_inputs: Sequence[Any],
    path: Path,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> Path:
    """Export ``module`` to one self-contained ONNX file with a dynamic batch dimension."""
    try:
        import torch
    except ImportError as e:
        raise UnsupportedError("PyTorch sources need torch: pip install torch onnxscript") from e
    inputs = tuple(example_inputs)
    names = list(
        input_names or [f"input_{i}" if len(inputs) > 1 else "input" for i in range(len(inputs))]
    )
    batch = torch.export.Dim("batch")
    module.eval()
    try:
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=names,
            output_names=list(output_names) if output_names else None,
            dynamic_shapes=tuple({0: batch} for _ in inputs),
            opset_version=EXPORT_OPSET,
            dynamo=True,
            external_data=False,
        )
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BuildError(f"torch.onnx.export failed: {first}") from e
    return path


def build_torch(
    module: Any,
    example_inputs: Sequence[Any],
    *,
    profile: str,
    out: Path,
    name: str | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    progress: Progress = lambda _: None,
    **request: Any,
) -> BuildResult:
    """Export, then build exactly as ``edge-sdk build`` does; ``request`` takes the rest of
    BuildRequest's fields (calibration, validation, version, keys, ...)."""
    model_name = name or type(module).__name__.lower()
    with tempfile.TemporaryDirectory(prefix="edge-sdk-torch-") as tmp:
        path = export_torch(
            module,
            example_inputs,
            Path(tmp) / f"{model_name}.onnx",
            input_names=input_names,
            output_names=output_names,
        )
        return build(
            BuildRequest(
                model=path, profile=resolve_profile(profile), out=out, name=model_name, **request
            ),
            progress,
        )
