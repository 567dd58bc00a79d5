"""Calibration and validation data: .npz files, image folders, or synthetic samples.

Every array's first axis counts samples; the remaining axes must match the model input with its
batch dimension removed. Mismatches are reported before any conversion work starts.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sdk.errors import DataError
from edge_sdk.profiles import ImagePreprocess
from edge_sdk.tensors import TensorSpec, format_shape

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LABELS_KEY = "labels"


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


def load_npz(path: Path) -> Dataset:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file: {e}") from e
    labels = arrays.pop(LABELS_KEY, None)
    if labels is not None:
        labels = labels.reshape(-1).astype(np.int64)
    if not arrays:
        raise DataError(f"{path} holds no input arrays (only '{LABELS_KEY}')")
    return Dataset(arrays, str(path), labels)


def load_image_folder(path: Path, spec: TensorSpec, image: ImagePreprocess) -> Dataset:
    """A folder of images for a single-image-input model; sub-folders are class labels."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
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
    classes = sorted({p.parent.name for p in files if p.parent != path})
    samples, labels = [], []
    for file in files:
        try:
            with Image.open(file) as img:
                mode = "L" if channels == 1 else "RGB"
                pixels = np.asarray(img.convert(mode).resize((int(width), int(height))), np.float32)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{file} is not a readable image: {e}") from e
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


def load_data(path: Path, specs: Sequence[TensorSpec], image: ImagePreprocess) -> Dataset:
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
