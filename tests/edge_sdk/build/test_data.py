from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_sdk.build.data import (
    Dataset,
    check_dataset,
    load_data,
    load_npz,
    parse_input_shapes,
    resolve_specs,
    synthetic,
)
from edge_sdk.core.profiles import ImagePreprocess
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import DataError

IMAGE = TensorSpec("input", ("batch", 1, 8, 8), "float32", "NCHW")


def _ds(**arrays: np.ndarray) -> Dataset:
    return Dataset(arrays, "cal.npz")


def test_good_data_passes() -> None:
    check_dataset(_ds(input=np.zeros((5, 1, 8, 8), np.float32)), [IMAGE])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"image": np.zeros((5, 1, 8, 8), np.float32)},
            r"missing \['input'\]; unexpected \['image'\]",
        ),
        (
            {"input": np.zeros((5, 1, 9, 8), np.float32)},
            "dimension 2 is 9 in the data but the model expects 8",
        ),
        ({"input": np.zeros((5, 8, 8), np.float32)}, "data has 3 dimensions"),
        (
            {"input": np.zeros((5, 1, 8, 8), np.float64)},
            r"is float64 but the model takes float32; convert it",
        ),
    ],
)
def test_mismatches_are_named(arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(DataError, match=message):
        check_dataset(_ds(**arrays), [IMAGE])


def test_dynamic_dims_take_their_size_from_data() -> None:
    spec = TensorSpec("tokens", ("batch", "seq", 16), "float32")
    data = _ds(tokens=np.zeros((3, 40, 16), np.float32))
    (resolved,) = resolve_specs([spec], data, {})
    assert resolved.shape == ("batch", 40, 16)


def test_input_shape_flag_fixes_dynamic_dims() -> None:
    spec = TensorSpec("tokens", ("batch", "seq", 16), "float32")
    (resolved,) = resolve_specs([spec], None, parse_input_shapes(["tokens=1x32x16"]))
    assert resolved.shape == ("batch", 32, 16)


def test_dynamic_dims_without_data_or_flag_are_an_error() -> None:
    spec = TensorSpec("tokens", ("batch", "seq", 16), "float32")
    with pytest.raises(DataError, match="pass --input-shape tokens=1"):
        resolve_specs([spec], None, {})


@pytest.mark.parametrize("value", ["tokens", "tokens=a,b", "=1,2", "tokens=0,3"])
def test_bad_input_shape_flag(value: str) -> None:
    with pytest.raises(DataError, match="--input-shape"):
        parse_input_shapes([value])


def test_npz_labels_are_split_off(tmp_path: Path) -> None:
    path = tmp_path / "v.npz"
    np.savez(path, input=np.zeros((4, 1, 8, 8), np.float32), labels=np.array([1, 2, 3, 4]))
    ds = load_npz(path)
    assert set(ds.inputs) == {"input"} and ds.labels is not None and list(ds.labels) == [1, 2, 3, 4]


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "v.npz"
    path.write_text("nope")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_npz(path)


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.new("L", (16, 16), value).save(tmp_path / label / f"{i}.png")
    ds = load_data(tmp_path, [IMAGE], ImagePreprocess(scale=1 / 255, mean=(0.5,), std=(0.5,)))
    assert ds.inputs["input"].shape == (4, 1, 8, 8)
    assert ds.inputs["input"].dtype == np.float32
    assert ds.labels is not None and list(ds.labels) == [0, 0, 1, 1]
    assert np.allclose(ds.inputs["input"][0], -1.0) and np.allclose(ds.inputs["input"][3], 1.0)


def test_image_folder_for_a_non_image_model(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="not an image tensor"):
        load_data(tmp_path, [TensorSpec("x", ("batch", 10), "float32", "NC")], ImagePreprocess())


def test_synthetic_data_says_what_it_costs() -> None:
    ds = synthetic([TensorSpec("input", ("batch", 1, 8, 8), "float32")], 8)
    assert ds.synthetic and ds.inputs["input"].shape == (8, 1, 8, 8)
    assert "synthetic" in ds.notes[0] and "--calibration" in ds.notes[0]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (ImagePreprocess(scale=float("inf")), "image scale must be a finite number > 0"),
        (ImagePreprocess(std=(0.0,)), "image std must hold numbers > 0"),
        (ImagePreprocess(mean=(0.1, 0.2)), "image mean has 2 values but input 'input' has 1"),
    ],
)
def test_image_preprocessing_that_would_make_nan_is_refused(
    tmp_path: Path, image: ImagePreprocess, message: str
) -> None:
    Image.new("L", (8, 8), 7).save(tmp_path / "a.png")
    with pytest.raises(DataError, match=message):
        load_data(tmp_path, [IMAGE], image)


def test_image_files_that_hang_or_explode_are_one_line(tmp_path: Path) -> None:
    import os

    Image.new("L", (8, 8), 7).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")  # opening it would block forever
    with pytest.raises(DataError, match=r"b\.png is a FIFO"):
        load_data(tmp_path, [IMAGE], ImagePreprocess())
    (tmp_path / "b.png").unlink()
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"c\.png is not a readable image"):
        load_data(tmp_path, [IMAGE], ImagePreprocess())
