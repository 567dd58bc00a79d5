"""Calibration and validation data: .npz files, image folders, or synthetic samples.

Every array's first axis counts samples; the remaining axes must match the model input with its
batch dimension removed. Mismatches are reported before any conversion work starts.
"""

from __future__ import annotations

import io
import lzma
import math
import struct
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sdk.core.profiles import ImagePreprocess, image_problem
from edge_sdk.core.tensors import TensorSpec, format_shape
from edge_sdk.core.userfile import MIB, check_regular_file, read_user_file
from edge_sdk.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LABELS_KEY = "labels"

# Limits on what a data file may make us allocate, checked from headers before any array is
# read: an .npz of a few KiB can declare (or inflate to) gigabytes.
MAX_DATA_BYTES = 2 << 30  # all arrays of one .npz, or one image folder after resizing
MAX_ARRAYS = 256  # members of one .npz
MAX_IMAGE_BYTES = 64 * MIB  # one image file
MAX_IMAGE_PIXELS = 64_000_000  # one decoded image (Pillow's own bomb limit is 89 million)

# What a broken .npz or zip member can raise from zipfile, zlib, lzma and numpy's reader.
_NPZ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    struct.error,
    KeyError,
)


@dataclass(frozen=True)
class Dataset:
    inputs: Mapping[str, np.ndarray]
    source: str
    labels: np.ndarray | None = None
    synthetic: bool = False
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def sample(self, index: int) -> dict[str, np.ndarray]:
        """One sample with a batch axis of 1, ready to feed."""
        return {name: array[index : index + 1] for name, array in self.inputs.items()}

    def take(self, count: int) -> Dataset:
        count = min(count, len(self))
        labels = None if self.labels is None else self.labels[:count]
        inputs = {k: v[:count] for k, v in self.inputs.items()}
        return Dataset(inputs, self.source, labels, self.synthetic, self.notes)


def parse_input_shapes(values: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``--input-shape name=1,3,224,224`` (``x`` also separates dimensions)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, sep, dims = value.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
            if any(d <= 0 for d in shape):
                raise ValueError
        except ValueError:
            raise DataError(
                f"--input-shape {value!r} is not NAME=D1,D2,...; "
                "e.g. --input-shape input=1,3,224,224"
            ) from None
        shapes[name] = shape
    return shapes


def resolve_specs(
    specs: Sequence[TensorSpec], dataset: Dataset | None, shapes: Mapping[str, tuple[int, ...]]
) -> tuple[TensorSpec, ...]:
    """Fix dynamic dimensions from --input-shape, else from the data; unknown names are errors."""
    names = {s.name for s in specs}
    for name in shapes:
        if name not in names:
            raise DataError(
                f"--input-shape names '{name}', but the model's inputs are {sorted(names)}"
            )
    resolved = []
    for spec in specs:
        if spec.name in shapes:
            full = shapes[spec.name]
            spec = spec.with_sample_shape(full[1:])
        elif dataset is not None and spec.name in dataset.inputs:
            spec = spec.with_sample_shape(tuple(dataset.inputs[spec.name].shape[1:]))
        if not all(isinstance(d, int) for d in spec.shape[1:]):
            raise DataError(
                f"input '{spec.name}' has dynamic dimensions {format_shape(spec.shape)} and "
                f"no data fixes them; pass --input-shape {spec.name}=1,..."
            )
        resolved.append(spec)
    return tuple(resolved)


def check_dataset(dataset: Dataset, specs: Sequence[TensorSpec]) -> None:
    """Names, ranks, fixed dimensions and dtypes must match the model; say which do not."""
    want = {s.name for s in specs}
    have = set(dataset.inputs)
    if want != have:
        missing, extra = sorted(want - have), sorted(have - want)
        detail = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {extra}" if extra else "",
            )
            if part
        )
        raise DataError(
            f"{dataset.source}: input names do not match the model ({detail}); the model's inputs "
            f"are {sorted(want)}"
        )
    counts = {len(a) for a in dataset.inputs.values()}
    if len(counts) != 1 or 0 in counts:
        raise DataError(
            f"{dataset.source}: every input array needs the same, non-zero sample count"
        )
    for spec in specs:
        array = dataset.inputs[spec.name]
        try:
            spec.with_sample_shape(tuple(array.shape[1:]))
        except DataError as e:
            raise DataError(f"{dataset.source}: {e}") from None
        if str(array.dtype) != spec.dtype:
            raise DataError(
                f"{dataset.source}: input '{spec.name}' is {array.dtype} but the model takes "
                f"{spec.dtype}; convert it with .astype(np.{spec.dtype})"
            )
    if dataset.labels is not None and len(dataset.labels) != len(dataset):
        raise DataError(
            f"{dataset.source}: {len(dataset.labels)} labels for {len(dataset)} samples"
        )


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / MIB:.1f} MiB"


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, each checked from its header (dtype, size against the file and
    against ``MAX_DATA_BYTES``) before it is read; pickled objects are never loaded."""
    check_regular_file(path, "data file", DataError)
    arrays: dict[str, np.ndarray] = {}
    total = 0
    with zipfile.ZipFile(path) as zf:
        members = zf.infolist()
        if len(members) > MAX_ARRAYS:
            raise DataError(f"{path} holds {len(members)} members, more than {MAX_ARRAYS}")
        for info in members:
            key = info.filename.removesuffix(".npy")
            if info.is_dir() or key == info.filename:
                raise DataError(
                    f"{path} holds {info.filename!r}, which is not an .npy array; save the "
                    "file with np.savez"
                )
            if key in arrays:
                raise DataError(f"{path} holds the array {key!r} twice")
            with zf.open(info) as stream:
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
                else:
                    raise ValueError(f"array {key!r} is .npy format {version}, not 1.0 or 2.0")
                header = stream.tell()
                nbytes = _check_header(path, key, shape, dtype, total)
                total += nbytes
                if info.file_size < header + nbytes:
                    raise DataError(f"{path}: array {key!r} is truncated (shorter than its header)")
                # Read what is really there, chunk by chunk: memory follows the bytes that
                # inflate, not what a header claims.
                data = bytearray()
                while len(data) < nbytes:
                    chunk = stream.read(min(nbytes - len(data), MIB))
                    if not chunk:
                        raise DataError(f"{path}: array {key!r} is truncated")
                    data += chunk
            flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
            arrays[key] = flat.reshape(shape, order="F" if fortran else "C")
    return arrays


def _check_header(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype, total: int) -> int:
    """The bytes an array's header promises, refused before reading if they cannot be right."""
    if dtype.hasobject:
        raise DataError(
            f"{path}: array {key!r} holds Python objects ({dtype}), which are never "
            "loaded; save numbers (e.g. float32, int64)"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if total + nbytes > MAX_DATA_BYTES:
        raise DataError(
            f"{path}: array {key!r} {tuple(shape)} {dtype} brings the data to "
            f"{_size(total + nbytes)}, more than the {_size(MAX_DATA_BYTES)} allowed; pass "
            "fewer samples"
        )
    return nbytes


def _check_array(path: Path, key: str, array: np.ndarray) -> None:
    """Numbers, with a sample axis, and (for floats) no NaN or infinity."""
    if array.dtype.kind not in "biuf":
        kind = "strings" if array.dtype.kind in "US" else f"{array.dtype} values"
        rule = (
            "labels must be integer class indices (0, 1, ...)"
            if key == LABELS_KEY
            else "model inputs must be numbers"
        )
        raise DataError(f"{path}: array {key!r} holds {kind}; {rule}")
    if array.ndim == 0:
        raise DataError(f"{path}: array {key!r} is a scalar; its first axis must count samples")
    if array.dtype.kind == "f":
        finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
        if not finite.all():
            first = int(np.argmin(finite))
            raise DataError(
                f"{path}: array {key!r} holds NaN or infinite values ({int((~finite).sum())} "
                f"samples, the first is sample {first}); fix or drop those samples"
            )


def load_npz(path: Path) -> Dataset:
    try:
        arrays = _read_npz(path)
    except DataError:
        raise
    except _NPZ_ERRORS as e:
        raise DataError(f"{path} is not a readable .npz file: {e}") from e
    for key, array in arrays.items():
        _check_array(path, key, array)
    labels = arrays.pop(LABELS_KEY, None)
    if labels is not None:
        if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
            raise DataError(
                f"{path}: array '{LABELS_KEY}' holds fractions; labels must be integer class "
                "indices"
            )
        labels = labels.reshape(-1).astype(np.int64)
    if not arrays:
        raise DataError(f"{path} holds no input arrays (only '{LABELS_KEY}')")
    return Dataset(arrays, str(path), labels)


def load_image_folder(path: Path, spec: TensorSpec, image: ImagePreprocess) -> Dataset:
    """A folder of images for a single-image-input model; sub-folders are class labels."""
    files = sorted(
        p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
    )
    if not files:
        raise DataError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    layout = spec.layout
    if layout not in ("NCHW", "NHWC"):
        raise DataError(
            f"input '{spec.name}' {format_shape(spec.shape)} is not an image tensor (NCHW or NHWC "
            "with 1 or 3 channels); pass an .npz instead"
        )
    c_axis, h_axis, w_axis = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
    channels, height, width = (spec.shape[c_axis], spec.shape[h_axis], spec.shape[w_axis])
    if not all(isinstance(d, int) for d in (channels, height, width)):
        raise DataError(
            f"input '{spec.name}' has dynamic image size {format_shape(spec.shape)}; pass "
            f"--input-shape {spec.name}=1,..."
        )
    problem = image_problem(image)  # also for an ImagePreprocess made in code, not a profile
    if problem is not None:
        raise DataError(f"image {problem[0]} {problem[1]} (profile [image] or --image-*)")
    for key, values in (("mean", image.mean), ("std", image.std)):
        if len(values) not in (1, channels):
            raise DataError(
                f"image {key} has {len(values)} values but input '{spec.name}' has {channels} "
                f"channels; give 1 or {channels} (--image-{key})"
            )
    need = len(files) * int(channels) * int(height) * int(width) * 4
    if need > MAX_DATA_BYTES:
        raise DataError(
            f"{path}: {len(files)} images at {height}x{width} need {_size(need)}, more than the "
            f"{_size(MAX_DATA_BYTES)} allowed; pass a folder with fewer images"
        )
    classes = sorted({p.parent.name for p in files if p.parent != path})
    samples, labels = [], []
    for file in files:
        pixels = _read_image(file, "L" if channels == 1 else "RGB", (int(width), int(height)))
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        samples.append(pixels)
        if classes:
            labels.append(classes.index(file.parent.name) if file.parent != path else -1)
    batch = np.stack(samples) * image.scale
    mean = np.asarray(image.mean, np.float32)
    std = np.asarray(image.std, np.float32)
    batch = (batch - mean) / std
    if layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    notes = (f"{len(files)} images from {path}, resized to {height}x{width}",)
    label_array = np.asarray(labels, np.int64) if classes and -1 not in labels else None
    return Dataset({spec.name: batch.astype(spec.dtype)}, str(path), label_array, notes=notes)


def _read_image(file: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image file as float pixels of ``size``; a bomb, a FIFO or garbage is one line."""
    from PIL import Image

    data = read_user_file(file, "image", MAX_IMAGE_BYTES, DataError)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; both are a refusal here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(
                        f"{file} is {width}x{height} pixels, more than the "
                        f"{MAX_IMAGE_PIXELS:,} allowed (a decompression bomb?); resize it"
                    )
                return np.asarray(img.convert(mode).resize(size), np.float32)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{file} is a decompression bomb ({e}); resize it") from e
    except MemoryError as e:
        raise DataError(f"{file} needs more memory to decode than there is") from e
    except Exception as e:  # Pillow's decoders raise many types (OSError, SyntaxError, ...)
        raise DataError(f"{file} is not a readable image: {type(e).__name__}: {e}") from e


def load_data(path: Path, specs: Sequence[TensorSpec], image: ImagePreprocess) -> Dataset:
    if not path.exists():
        raise DataError(f"data {path} does not exist; pass an .npz file or a folder of images")
    if path.is_dir():
        if len(specs) != 1:
            raise DataError(
                f"{path} is an image folder but the model has {len(specs)} inputs; pass an .npz"
            )
        return load_image_folder(path, specs[0], image)
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path} is neither an .npz file nor a folder of images")
    return load_npz(path)


def synthetic(specs: Sequence[TensorSpec], count: int, seed: int = 0) -> Dataset:
    """Stand-in data when the user gives none: standard normal floats, small non-negative ints."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    need = sum(
        count * math.prod(int(d) for d in spec.shape[1:]) * np.dtype(spec.dtype).itemsize
        for spec in specs
    )
    if need > MAX_DATA_BYTES:
        shapes = ", ".join(f"{s.name} {format_shape(s.shape)}" for s in specs)
        raise DataError(
            f"{count} synthetic samples of {shapes} need {_size(need)}, more than the "
            f"{_size(MAX_DATA_BYTES)} allowed; check --input-shape, or pass real data"
        )
    for spec in specs:
        shape = (count, *(int(d) for d in spec.shape[1:]))
        if spec.dtype.startswith("float"):
            inputs[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            inputs[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            inputs[spec.name] = rng.integers(0, 16, shape).astype(spec.dtype)
    note = (
        f"no calibration data: {count} synthetic samples (standard normal) stood in; int8 ranges "
        "fitted to noise can misplace real activations, and fidelity was measured on the same "
        "noise, so the accuracy on real inputs is unproven: pass --calibration and --validation"
    )
    return Dataset(inputs, "synthetic", None, synthetic=True, notes=(note,))
