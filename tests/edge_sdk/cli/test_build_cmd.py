"""``edge-sdk build`` through the real CLI entry point: good runs and every kind of bad input.

Each bad input must give exactly one line on stderr, a non-zero exit, and leave --out empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.core.profiles import builtin_profile_dir
from testing.factories import make_dynamic_sequence_model
from tests.contract import BUILD_REPORT_KEYS
from tests.edge_sdk.cli.progress import messages

Cli = Callable[..., tuple[int, str, str]]


def test_build_json_has_the_spec_keys(cli: Cli, digits: Path, tmp_path: Path) -> None:
    code, out, err = cli(
        "build",
        digits / "model.onnx",
        "--profile",
        "jetson-orin",
        "--calibration",
        digits / "calibration.npz",
        "--validation",
        digits / "validation.npz",
        "--out",
        tmp_path,
        "--version",
        "1.2.0",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert set(report) >= BUILD_REPORT_KEYS
    assert report["version"] == 1_002_000 and report["label"] == "1.2.0"
    assert Path(report["bundle"]).is_file()


def test_build_prints_a_table(cli: Cli, digits: Path, tmp_path: Path) -> None:
    code, out, _ = cli(
        "build",
        digits / "model.onnx",
        "-p",
        "x86-64",
        "--validation",
        digits / "validation.npz",
        "--out",
        tmp_path,
    )
    assert code == 0
    assert "candidates for x86-64" in out and "CHOSEN" in out


def _wrong_names(tmp_path: Path) -> Path:
    np.savez(tmp_path / "bad.npz", image=np.zeros((4, 1, 8, 8), np.float32))
    return tmp_path / "bad.npz"


def _wrong_shape(tmp_path: Path) -> Path:
    np.savez(tmp_path / "bad.npz", input=np.zeros((4, 1, 28, 28), np.float32))
    return tmp_path / "bad.npz"


def _wrong_dtype(tmp_path: Path) -> Path:
    np.savez(tmp_path / "bad.npz", input=np.zeros((4, 1, 8, 8), np.float64))
    return tmp_path / "bad.npz"


def _nhwc_layout(tmp_path: Path) -> Path:
    # Images laid out for TFLite (NHWC) handed to an NCHW ONNX model.
    np.savez(tmp_path / "nhwc.npz", input=np.zeros((4, 8, 8, 1), np.float32))
    return tmp_path / "nhwc.npz"


def _not_onnx(tmp_path: Path) -> Path:
    (tmp_path / "notes.onnx").write_text("this is not a model\n")
    return tmp_path / "notes.onnx"


def _truncated(tmp_path: Path) -> Path:
    data = (Path(__file__).parents[3] / "examples/digits/model.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    return tmp_path / "cut.onnx"


def _malformed_profile(tmp_path: Path) -> Path:
    text = (builtin_profile_dir() / "x86-64.toml").read_text().replace("threads = 4", "threads = 0")
    (tmp_path / "board.toml").write_text(text)
    return tmp_path / "board.toml"


def _not_a_key(tmp_path: Path) -> Path:
    (tmp_path / "signing.key").write_text("-----BEGIN NOTHING-----\nabc\n")
    return tmp_path / "signing.key"


def _npz(tmp_path: Path, **arrays: object) -> Path:
    np.savez(tmp_path / "data.npz", **arrays)  # type: ignore[arg-type]
    return tmp_path / "data.npz"


def _images(n: int, value: float = 0.5) -> np.ndarray:
    return np.full((n, 1, 8, 8), value, np.float32)


def _string_labels(tmp_path: Path) -> Path:
    return _npz(tmp_path, input=_images(4), labels=np.array(["cat", "dog", "cat", "dog"]))


def _nan_calibration(tmp_path: Path) -> Path:
    data = _images(4)
    data[2, 0, 3, 3] = np.nan
    return _npz(tmp_path, input=data)


def _inf_validation(tmp_path: Path) -> Path:
    data = _images(4)
    data[1] = np.inf
    return _npz(tmp_path, input=data, labels=np.arange(4))


def _object_array(tmp_path: Path) -> Path:
    return _npz(tmp_path, input=np.array([{"a": 1}, None], dtype=object))


def _npz_declaring_a_terabyte(tmp_path: Path) -> Path:
    import io
    import zipfile

    body = io.BytesIO()
    np.save(body, np.zeros((2, 1, 8, 8), np.float32))
    header = body.getvalue().replace(b"(2, 1, 8, 8)", b"(2000000000000, 1, 8, 8)", 1)
    with zipfile.ZipFile(tmp_path / "huge.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("input.npy", header)
    return tmp_path / "huge.npz"


def _png_header(width: int, height: int) -> bytes:
    """A PNG that only declares its size: what Pillow reads before it decodes anything."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _image_bomb(size: int) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        from PIL import Image

        folder = tmp_path / "images"
        folder.mkdir()
        Image.new("L", (8, 8), 3).save(folder / "fine.png")
        (folder / "bomb.png").write_bytes(_png_header(size, size))
        return folder

    return make


def _fifo_image(tmp_path: Path) -> Path:
    import os

    folder = tmp_path / "images"
    folder.mkdir()
    os.mkfifo(folder / "stuck.png")  # opening it would block forever
    return folder


def _unsafe_profile_id(tmp_path: Path) -> Path:
    text = (builtin_profile_dir() / "x86-64.toml").read_text()
    text = text.replace('id = "x86-64"', 'id = "../../x"')
    (tmp_path / "board.toml").write_text(text)
    return tmp_path / "board.toml"


def _infinite_scale_profile(tmp_path: Path) -> Path:
    text = (builtin_profile_dir() / "x86-64.toml").read_text() + "\n[image]\nscale = inf\n"
    (tmp_path / "board.toml").write_text(text)
    return tmp_path / "board.toml"


def _custom_op_model(tmp_path: Path) -> Path:
    """Valid ONNX that onnxruntime cannot load: its optimizer logged a traceback above our line."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [x], [y])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), tmp_path / "custom.onnx")
    return tmp_path / "custom.onnx"


def _dense_output_model(tmp_path: Path) -> Path:
    """One convolution: its first output is a [N, 4, 8, 8] map, no class scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(3).standard_normal((4, 1, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["input", "w"], ["map"], pads=[1, 1, 1, 1], name="conv")
    graph = helper.make_graph(
        [node],
        "dense",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "dense.onnx")
    return tmp_path / "dense.onnx"


DIGITS = Path(__file__).parents[3] / "examples" / "digits"
MODEL = DIGITS / "model.onnx"

BAD_INPUTS: dict[str, tuple[Callable[[Path], list[str | Path]], str]] = {
    "missing file": (lambda t: [t / "nope.onnx", "-p", "x86-64"], "does not exist"),
    "not onnx": (lambda t: [_not_onnx(t), "-p", "x86-64"], "not a readable ONNX model"),
    "truncated onnx": (lambda t: [_truncated(t), "-p", "x86-64"], "cut.onnx"),
    "unknown profile": (lambda t: [MODEL, "-p", "jetson-orn"], "did you mean 'jetson-orin'"),
    "malformed profile": (lambda t: [MODEL, "-p", _malformed_profile(t)], "key 'threads'"),
    "calibration names": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _wrong_names(t)],
        "input names do not match",
    ),
    "calibration shape": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _wrong_shape(t)],
        "dimension 2 is 28",
    ),
    "calibration dtype": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _wrong_dtype(t)],
        "is float64 but the model takes float32",
    ),
    "calibration layout for tflite": (
        lambda t: [MODEL, "-p", "raspberry-pi-4", "--calibration", _nhwc_layout(t)],
        "dimension 1 is 8 in the data but the model expects 1",
    ),
    "not a key": (lambda t: [MODEL, "-p", "x86-64", "--key", _not_a_key(t)], "signing.key"),
    "bad version": (lambda t: [MODEL, "-p", "x86-64", "--version", "latest"], "--version"),
    # Hostile and unlucky inputs (issue 11, class 15): each is one line, exit 2, nothing written.
    "string labels": (
        lambda t: [MODEL, "-p", "x86-64", "--validation", _string_labels(t)],
        "array 'labels' holds strings; labels must be integer class indices",
    ),
    "NaN calibration": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _nan_calibration(t)],
        "array 'input' holds NaN or infinite values (1 samples, the first is sample 2)",
    ),
    "inf validation": (
        lambda t: [MODEL, "-p", "x86-64", "--validation", _inf_validation(t)],
        "array 'input' holds NaN or infinite values",
    ),
    "object array": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _object_array(t)],
        "holds Python objects",
    ),
    "npz declaring a terabyte": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _npz_declaring_a_terabyte(t)],
        "more than the 2.0 GiB allowed",
    ),
    "decompression bomb image": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _image_bomb(20_000)(t)],
        "decompression bomb",
    ),
    "image over the pixel limit": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _image_bomb(9_000)(t)],
        "bomb.png is 9000x9000 pixels",
    ),
    "FIFO in an image folder": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _fifo_image(t)],
        "stuck.png is a FIFO",
    ),
    "FIFO as data": (
        lambda t: [MODEL, "-p", "x86-64", "--calibration", _fifo_image(t) / "stuck.png"],
        "neither an .npz file nor a folder",
    ),
    "unsafe profile id": (lambda t: [MODEL, "-p", _unsafe_profile_id(t)], "key 'id'"),
    "infinite image scale": (
        lambda t: [MODEL, "-p", _infinite_scale_profile(t)],
        "key 'scale' must be a finite number > 0",
    ),
    "image scale flag inf": (
        lambda t: [MODEL, "-p", "x86-64", "--image-scale", "inf"],
        "--image-scale must be a finite number > 0",
    ),
    "/dev/zero as key": (lambda t: [MODEL, "-p", "x86-64", "--key", "/dev/zero"], "device"),
    "empty name": (lambda t: [MODEL, "-p", "x86-64", "--name", ""], "model name ''"),
    "empty version": (lambda t: [MODEL, "-p", "x86-64", "--version", ""], "--version ''"),
    "version 0.0.0": (lambda t: [MODEL, "-p", "x86-64", "--version", "0.0.0"], "--version '0.0.0'"),
    "version 0": (lambda t: [MODEL, "-p", "x86-64", "--version", "0"], "--version '0'"),
    "empty label": (lambda t: [MODEL, "-p", "x86-64", "--label", ""], "--label"),
    "huge --input-shape": (
        lambda t: [
            make_dynamic_sequence_model(t / "seq.onnx"),
            "-p",
            "x86-64",
            "--input-shape",
            "x=1,100000000,16",
        ],
        "more than the 2.0 GiB allowed; check --input-shape",
    ),
    "op onnxruntime lacks": (
        lambda t: [_custom_op_model(t), "-p", "x86-64"],
        "com.example:Frobnicate(-1) is not a registered function/op",
    ),
    "version in superscript": (
        lambda t: [MODEL, "-p", "x86-64", "--version", "\u00b2"],
        "--version",
    ),
    "labels for a first output declared values": (
        lambda t: [
            MODEL,
            "-p",
            "x86-64",
            "--validation",
            DIGITS / "validation.npz",
            "--first-output",
            "values",
        ],
        "has 'labels', which only class scores can be scored against",
    ),
    "class scores declared for a dense output": (
        lambda t: [_dense_output_model(t), "-p", "x86-64", "--first-output", "class-scores"],
        "not [N, K] float class scores; pass --first-output values",
    ),
    "unknown first output kind": (
        lambda t: [MODEL, "-p", "x86-64", "--first-output", "logits"],
        "--first-output",
    ),
    "version of 5000 digits": (
        lambda t: [MODEL, "-p", "x86-64", "--version", "9" * 5000],
        "--version",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_nothing(cli: Cli, tmp_path: Path, case: str) -> None:
    make_args, expected = BAD_INPUTS[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, stderr = cli("build", *make_args(inputs), "--out", out)
    assert code != 0
    assert len(messages(stderr)) == 1, stderr
    assert messages(stderr)[0].startswith("error: ") and expected in stderr
    assert "Traceback" not in stderr + stdout
    assert list(out.iterdir()) == []


def test_unwritable_out_is_one_line(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, stderr = cli("build", MODEL, "-p", "x86-64", "--out", blocker / "sub")
    assert code == 2
    assert len(messages(stderr)) == 1 and "--out" in stderr


def test_existing_version_is_not_overwritten(cli: Cli, tmp_path: Path) -> None:
    args = [
        "build",
        MODEL,
        "-p",
        "x86-64",
        "--validation",
        DIGITS / "validation.npz",
        "--out",
        tmp_path,
        "--version",
        "3",
    ]
    assert cli(*args)[0] == 0
    before = (tmp_path / "model-v3-x86-64.edgebundle").read_bytes()
    code, _, stderr = cli(*args)
    assert code == 2 and "already exists" in stderr
    assert (tmp_path / "model-v3-x86-64.edgebundle").read_bytes() == before


def test_profiles_list_and_show_json(cli: Cli) -> None:
    code, out, _ = cli("profiles", "list", "--json")
    assert code == 0 and "jetson-orin" in {p["id"] for p in json.loads(out)}
    code, out, _ = cli("profiles", "show", "coral-edgetpu", "--json")
    assert code == 0 and json.loads(out)["quantization"]["io_type"] == "uint8"
    code, _, err = cli("profiles", "show", "coral")
    assert code == 2 and "unknown profile 'coral'" in err


def test_dynamic_sequence_needs_and_takes_input_shape(cli: Cli, tmp_path: Path) -> None:
    from testing.factories import make_dynamic_sequence_model

    model = make_dynamic_sequence_model(tmp_path / "seq.onnx")
    out = tmp_path / "out"
    code, _, err = cli("build", model, "-p", "x86-64-vnni", "--out", out)
    assert code == 2 and "pass --input-shape x=1" in err
    code, stdout, err = cli(
        "build", model, "-p", "x86-64-vnni", "--out", out, "--input-shape", "x=1,32,16", "--json"
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert report["inputs"][0]["shape"] == ["batch", 32, 16]
    assert report["calibration"]["synthetic"]


def test_image_folder_calibration_with_normalisation_flags(cli: Cli, tmp_path: Path) -> None:
    from PIL import Image

    images = tmp_path / "images"
    for label in range(3):
        (images / str(label)).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (32, 32), 40 * label + 10 * i).save(images / str(label) / f"{i}.png")
    code, stdout, err = cli(
        "build",
        MODEL,
        "-p",
        "x86-64",
        "--calibration",
        images,
        "--validation",
        images,
        "--image-scale",
        str(1 / 16),
        "--image-mean",
        "0",
        "--image-std",
        "1",
        "--out",
        tmp_path / "out",
        "--json",
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert report["calibration"]["samples"] == 12 and report["validation"]["labels"]
    assert any("resized to 8x8" in note for note in report["notes"])


def test_late_failure_leaves_nothing_in_out(cli: Cli, tmp_path: Path) -> None:
    """No candidate inside the budget is found only after every candidate was built and timed."""
    text = (builtin_profile_dir() / "x86-64-vnni.toml").read_text()
    text = text.replace(
        'precisions = ["int8_static", "int8_dynamic", "fp32"]', 'precisions = ["int8_static"]'
    )
    text = text.replace("min_cosine = 0.99", "min_cosine = 0.9999999")
    text = text.replace("mixed_precision_steps = 3", "mixed_precision_steps = 1")
    profile = tmp_path / "int8-only.toml"
    profile.write_text(text)
    out = tmp_path / "out"
    code, _, err = cli(
        "build",
        MODEL,
        "-p",
        profile,
        "--calibration",
        DIGITS / "calibration.npz",
        "--validation",
        DIGITS / "validation.npz",
        "--out",
        out,
    )
    assert code == 4
    assert len(messages(err)) == 1 and "no candidate" in err and "int8_mixed-1" in err
    assert list(out.iterdir()) == []


def test_tflite_profile_without_the_toolchain_says_what_to_install(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx2tf" else real(name, *a)
    )
    code, _, err = cli("build", MODEL, "-p", "raspberry-pi-4", "--out", tmp_path / "out")
    assert code == 3 and "install the tflite extra" in err
    assert not (tmp_path / "out").exists()


def test_the_cli_offers_exactly_the_kinds_the_core_knows() -> None:
    from edge_sdk.cli.build_cmd import FirstOutputKind
    from edge_sdk.core.fidelity import FIRST_OUTPUT_KINDS

    assert tuple(k.value for k in FirstOutputKind) == FIRST_OUTPUT_KINDS
