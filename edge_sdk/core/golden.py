"""Golden test vectors: a few inputs and the artifact's own outputs, checked again on the device.

The device runs the same artifact in its own runtime (maybe another execution provider), so the
check allows a tolerance that depends on the precision: an int8 kernel on another provider may
round a value one quantization step differently, a float kernel only in the last bits.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge_sdk.core import npy
from edge_sdk.core.bundle import Bundle
from edge_sdk.core.npy import MAX_HEADER_BYTES
from edge_sdk.core.tensors import TensorSpec, format_shape
from edge_sdk.core.text import error_line
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
# Golden vectors are 8 samples: caps far above any real set, far below a decompression bomb.
MAX_ARRAYS = 2048  # an input or output each, for the manifest's 1024 tensors of each
MAX_ARRAY_BYTES = 64 << 20  # all arrays together, as they are in memory
NUMERIC_KINDS = "biuf"
# What the zip module and the .npy reader raise for damaged bytes.
_NPZ_ERRORS = (
    zipfile.BadZipFile,
    ValueError,
    EOFError,
    OSError,
    NotImplementedError,
    struct.error,
    zlib.error,
)


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


def unpack(
    data: bytes,
    inputs: Sequence[TensorSpec] = (),
    outputs: Sequence[TensorSpec] = (),
    count: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The golden inputs and outputs in ``data`` (an .npz), checked against the manifest's
    tensors and vector count where given. Every problem is one ``BundleError``."""
    arrays = _read_npz(data)
    golden_in = {k.removeprefix("input/"): v for k, v in arrays.items() if k.startswith("input/")}
    golden_out = {
        k.removeprefix("output/"): v for k, v in arrays.items() if k.startswith("output/")
    }
    if not golden_in or not golden_out:
        raise BundleError("golden vectors hold no inputs or no outputs")
    lengths = {len(a) if a.ndim else 0 for a in arrays.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise BundleError(
            "golden vectors are malformed: every array must hold the same number (at least 1) "
            "of vectors along its first axis"
        )
    if count is not None and lengths != {count}:
        raise BundleError(f"golden vectors hold {lengths.pop()} vectors, the manifest says {count}")
    for kind, got, specs in (("input", golden_in, inputs), ("output", golden_out, outputs)):
        for name, array in got.items():
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                raise BundleError(
                    f"golden {kind} '{name}' holds NaN or infinity; a check against it proves "
                    "nothing"
                )
        if specs:
            _match(kind, got, specs, exact=kind == "input")
    return golden_in, golden_out


def _match(
    kind: str, arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], *, exact: bool
) -> None:
    """Golden arrays named as the manifest's tensors; inputs also of their dtype, rank and fixed
    dimensions (they are fed to the runtime as they are)."""
    want = {spec.name: spec for spec in specs}
    if set(arrays) != set(want):
        missing = sorted(set(want) - set(arrays))
        extra = sorted(set(arrays) - set(want))
        what = f"lack {kind} '{missing[0]}'" if missing else f"hold an unknown {kind} '{extra[0]}'"
        raise BundleError(f"golden vectors {what[:160]} (the manifest's {kind}s differ)")
    if not exact:
        return
    for name, array in arrays.items():
        spec = want[name]
        if str(array.dtype) != spec.dtype:
            raise BundleError(
                f"golden {kind} '{name}' is {array.dtype}, the manifest says {spec.dtype[:32]}"
            )
        fixed = [(axis, d) for axis, d in enumerate(spec.shape) if isinstance(d, int) and axis]
        if array.ndim != len(spec.shape) or any(array.shape[a] != d for a, d in fixed):
            raise BundleError(
                f"golden {kind} '{name}' has shape {list(array.shape)}, the manifest says "
                f"{format_shape(spec.shape)[:160]}"
            )


def _read_npz(data: bytes) -> dict[str, np.ndarray]:
    """Every array of an .npz, without numpy's loader: each member's .npy header is read first
    and its dtype and size checked against the caps before a byte of its data is read (or
    inflated: members may be deflated)."""
    arrays: dict[str, np.ndarray] = {}
    budget = MAX_ARRAY_BYTES
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ARRAYS:
                raise BundleError(
                    f"golden vectors hold {len(infos)} arrays, over the cap of {MAX_ARRAYS}"
                )
            for info in infos:
                key = _array_key(info)
                if key in arrays:
                    raise BundleError(f"golden vectors hold two arrays named {key[:80]!r}")
                if info.file_size > budget + MAX_HEADER_BYTES:
                    raise BundleError(_over(key, info.file_size))
                with zf.open(info) as stream:
                    header = npy.read_header(stream.read)
                    if header.dtype.kind not in NUMERIC_KINDS:
                        raise BundleError(
                            f"golden array {key[:80]!r} is {header.dtype}; golden vectors are "
                            "numbers (bool, int, uint, float)"
                        )
                    if header.nbytes > budget:
                        raise BundleError(_over(key, header.nbytes))
                    body = stream.read(header.nbytes + 1)
                arrays[key] = npy.from_data(header, body)
                budget -= header.nbytes
    except _NPZ_ERRORS as e:
        raise BundleError(
            f"golden vectors are unreadable (not a valid .npz: {error_line(e, 120)})"
        ) from e
    return arrays


def _array_key(info: zipfile.ZipInfo) -> str:
    name = info.filename
    if not name.startswith(("input/", "output/")) or not name.endswith(".npy") or len(name) > 512:
        raise BundleError(
            f"golden vectors hold an unexpected member {name[:80]!r} (only input/NAME.npy and "
            "output/NAME.npy)"
        )
    if info.flag_bits & 0x1:
        raise BundleError(f"golden array {name[:80]!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise BundleError(
            f"golden array {name[:80]!r} uses zip method {info.compress_type}; only stored or "
            "deflated (np.savez, np.savez_compressed)"
        )
    return name.removesuffix(".npy")


def _over(key: str, size: int) -> str:
    return (
        f"golden array {key[:80]!r} needs {size} bytes, over what is left of the "
        f"{MAX_ARRAY_BYTES}-byte cap on all golden arrays"
    )


def check(
    data: bytes,
    run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
    atol: float,
    rtol: float,
    *,
    inputs: Sequence[TensorSpec] = (),
    outputs: Sequence[TensorSpec] = (),
    count: int | None = None,
) -> GoldenCheck:
    """Run the golden inputs through ``run`` (one sample at a time, as a device serves) and
    compare every output element: |got - want| <= atol + rtol * |want|. The vectors are first
    checked against ``inputs``, ``outputs`` and ``count`` (the manifest's) where given."""
    feeds, expected = unpack(data, inputs, outputs, count)
    vectors = len(next(iter(feeds.values())))
    worst, worst_where = 0.0, ""
    for i in range(vectors):
        got = run({name: array[i : i + 1] for name, array in feeds.items()})
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
        True, worst, atol, f"{vectors} vectors within tolerance (max error {worst:.3g})"
    )


def check_bundle(
    bundle: Bundle, run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
) -> GoldenCheck:
    """:func:`check` with the bundle's own golden vectors, tolerance and tensors."""
    m = bundle.manifest
    return check(
        bundle.golden,
        run,
        m.golden.atol,
        m.golden.rtol,
        inputs=m.inputs,
        outputs=m.outputs,
        count=m.golden.count,
    )
