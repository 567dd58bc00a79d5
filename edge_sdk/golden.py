"""Golden test vectors: a few inputs and the artifact's own outputs, checked again on the device.

The device runs the same artifact in its own runtime (maybe another execution provider), so the
check allows a tolerance that depends on the precision: an int8 kernel on another provider may
round a value one quantization step differently, a float kernel only in the last bits.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import BundleError

# Tolerance as a fraction of the reference outputs' range, per precision.
RELATIVE_TOLERANCE = {
    "fp32": 1e-4,
    "fp16": 1e-2,
    "int8_dynamic": 5e-2,
    "int8_static": 5e-2,
    "int8_full": 5e-2,
}
MIN_ATOL = 1e-5


@dataclass(frozen=True)
class GoldenCheck:
    passed: bool
    max_abs_error: float
    atol: float
    detail: str


def tolerance_for(precision: str, outputs: Sequence[np.ndarray]) -> tuple[float, float]:
    """(atol, rtol) for this precision, scaled by the outputs' dynamic range."""
    span = max(float(np.max(o) - np.min(o)) if o.size else 0.0 for o in outputs)
    fraction = RELATIVE_TOLERANCE.get(precision, 5e-2)
    return max(MIN_ATOL, fraction * span), fraction


def pack(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    arrays = {f"input/{k}": v for k, v in inputs.items()}
    arrays.update({f"output/{k}": v for k, v in outputs.items()})
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def unpack(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError) as e:
        raise BundleError(f"golden vectors are unreadable: {e}") from e
    inputs = {k.removeprefix("input/"): v for k, v in arrays.items() if k.startswith("input/")}
    outputs = {k.removeprefix("output/"): v for k, v in arrays.items() if k.startswith("output/")}
    if not inputs or not outputs:
        raise BundleError("golden vectors hold no inputs or no outputs")
    return inputs, outputs


def check(
    data: bytes,
    run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
    atol: float,
    rtol: float,
) -> GoldenCheck:
    """Run the golden inputs through ``run`` (one sample at a time, as a device serves) and
    compare every output element: |got - want| <= atol + rtol * |want|."""
    inputs, expected = unpack(data)
    count = len(next(iter(inputs.values())))
    worst, worst_where = 0.0, ""
    for i in range(count):
        got = run({name: array[i : i + 1] for name, array in inputs.items()})
        for name, want in expected.items():
            if name not in got:
                return GoldenCheck(False, float("inf"), atol, f"output '{name}' is missing")
            have = np.asarray(got[name], np.float64)
            ref = want[i : i + 1].astype(np.float64)
            if have.shape != ref.shape:
                return GoldenCheck(
                    False,
                    float("inf"),
                    atol,
                    f"output '{name}' has shape {have.shape}, want {ref.shape}",
                )
            excess = np.abs(have - ref) - (atol + rtol * np.abs(ref))
            err = float(np.max(np.abs(have - ref))) if ref.size else 0.0
            if err > worst:
                worst, worst_where = err, f"output '{name}', vector {i}"
            if np.any(excess > 0) or not np.all(np.isfinite(have)):
                return GoldenCheck(
                    False,
                    err,
                    atol,
                    f"{worst_where or name}: max error {err:.6g} > tolerance {atol:.6g}",
                )
    return GoldenCheck(
        True, worst, atol, f"{count} vectors within tolerance (max error {worst:.3g})"
    )
