from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edge_sdk.core.profiles import (
    builtin_profile_dir,
    list_profiles,
    load_profile_file,
    resolve_profile,
)
from edge_sdk.errors import ProfileError

SPEC_PROFILES = {
    "jetson-orin",
    "jetson-nano",
    "raspberry-pi-4",
    "raspberry-pi-5",
    "coral-edgetpu",
    "x86-64-vnni",
    "x86-64",
    "arm64-generic",
}


def test_every_profile_the_spec_names_is_built_in_and_valid() -> None:
    profiles = {p.id: p for p in list_profiles()}
    assert set(profiles) >= SPEC_PROFILES
    orin = profiles["jetson-orin"]
    assert orin.runtime == "onnx"
    assert orin.providers[0] == "TensorrtExecutionProvider"
    assert orin.precisions[:2] == ("int8_static", "fp16")
    assert orin.quantization.symmetric_activations and orin.quantization.per_channel
    assert profiles["jetson-nano"].precisions[0] == "fp16"
    assert profiles["coral-edgetpu"].quantization.io_type == "uint8"
    assert profiles["raspberry-pi-4"].delegates == ("xnnpack",)
    assert profiles["x86-64-vnni"].selection == "fastest"


def _write(tmp_path: Path, text: str, name: str = "board.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = (builtin_profile_dir() / "x86-64-vnni.toml").read_text()


def test_user_profile_file_loads_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace('id = "x86-64-vnni"', 'id = "my-board"'))
    assert resolve_profile(str(path)).id == "my-board"


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("threads = 4", "thread = 4\nthreads = 4"))
    with pytest.raises(
        ProfileError, match=r"board.toml: unknown key 'thread' \(did you mean 'threads'\?\)"
    ):
        load_profile_file(path)


def test_unknown_key_in_a_table_names_the_table(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("per_channel = true", "per_chanel = true"))
    with pytest.raises(ProfileError, match=r"\[quantization\]: unknown key 'per_chanel'"):
        load_profile_file(path)


def test_missing_field_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("opset = 17\n", ""))
    with pytest.raises(ProfileError, match="key 'opset' is missing"):
        load_profile_file(path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("threads = 4", "threads = -2", "key 'threads' must be a positive integer"),
        ("threads = 4", "threads = true", "key 'threads' must be int"),
        ('runtime = "onnx"', 'runtime = "tensorrt"', "key 'runtime' must be one of onnx, tflite"),
        (
            'precisions = ["int8_static", "int8_dynamic", "fp32"]',
            'precisions = ["int4"]',
            "key 'precisions' has 'int4'",
        ),
        ("min_cosine = 0.99", "min_cosine = 1.5", "key 'min_cosine' must be between 0 and 1"),
        (
            'calibration_methods = ["minmax", "entropy", "percentile"]',
            'calibration_methods = ["kl"]',
            "key 'calibration_methods' has 'kl'",
        ),
        # Values that would reach the build as NaN, Inf, a path or an endless loop.
        ('id = "x86-64-vnni"', 'id = "../../etc/x"', "key 'id' '../../etc/x' must be 1-64"),
        ('id = "x86-64-vnni"', 'id = ""', "key 'id' '' must be 1-64"),
        ('id = "x86-64-vnni"', 'id = "a/b"', "key 'id'"),
        ("mixed_precision_steps = 3", "mixed_precision_steps = -1", "between 0 and 16, got -1"),
        ("mixed_precision_steps = 3", "mixed_precision_steps = 10000000", "between 0 and 16"),
        ("threads = 4", "threads = 99999999999", "key 'threads' must be a positive integer betw"),
        ("calibration_samples = 256", "calibration_samples = 0", "calibration_samples"),
        ("memory_mb = 4096", "memory_mb = 9223372036854775807", "memory_mb"),
        ("min_cosine = 0.99", "min_cosine = nan", "key 'min_cosine' must be between 0 and 1"),
        ("opset = 17", "opset = inf", "key 'opset' must be int"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASE
    path = _write(tmp_path, BASE.replace(old, new))
    with pytest.raises(ProfileError, match=message) as info:
        load_profile_file(path)
    assert "\n" not in str(info.value)
    assert "board.toml" in str(info.value)


def test_malformed_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "id = \n[[[")
    with pytest.raises(ProfileError, match="is not valid TOML"):
        load_profile_file(path)


def test_unknown_profile_suggests_nearest() -> None:
    with pytest.raises(ProfileError, match="did you mean 'raspberry-pi-5'"):
        resolve_profile("raspbery-pi-5")


def test_search_path_env_adds_user_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, BASE.replace('id = "x86-64-vnni"', 'id = "edge-box"'), "edge-box.toml")
    monkeypatch.setenv("EDGE_SDK_PROFILE_PATH", str(tmp_path))
    assert resolve_profile("edge-box").id == "edge-box"
    assert "edge-box" in {p.id for p in list_profiles()}


def test_file_name_and_id_must_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, BASE.replace('id = "x86-64-vnni"', 'id = "other"'), "edge-box.toml")
    monkeypatch.setenv("EDGE_SDK_PROFILE_PATH", str(tmp_path))
    with pytest.raises(ProfileError, match="make them match"):
        resolve_profile("edge-box")


PI = (builtin_profile_dir() / "raspberry-pi-4.toml").read_text()
PI_SECOND = (
    'runtime = "onnx"\nproviders = ["CPUExecutionProvider"]\nprecisions = ["int8_static", "fp32"]'
)


def test_the_raspberry_pi_profiles_have_onnxruntime_as_a_second_runtime() -> None:
    for name in ("raspberry-pi-4", "raspberry-pi-5"):
        pi = resolve_profile(name)
        assert pi.runtimes == ("tflite", "onnx")
        onnx = pi.on_second_runtime()
        assert (onnx.runtime, onnx.precisions, onnx.providers, onnx.delegates) == (
            "onnx",
            ("int8_static", "fp32"),
            ("CPUExecutionProvider",),
            (),
        )
        # Shared: how to quantize and what fidelity may be lost.
        assert onnx.quantization == pi.quantization
        assert onnx.accuracy_budget == pi.accuracy_budget
        assert onnx.second_runtime is None
    assert resolve_profile("x86-64").runtimes == ("onnx",)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('runtime = "onnx"', 'runtime = "tflite"', "must differ from the profile's own runtime"),
        ('runtime = "onnx"', 'runtime = "tensorrt"', "key 'runtime' must be one of onnx, tflite"),
        ('precisions = ["int8_static", "fp32"]', 'precisions = ["int8_full"]', "has 'int8_full'"),
        ('precisions = ["int8_static", "fp32"]', "precisions = []", "at least one precision"),
        ('providers = ["CPUExecutionProvider"]', "providers = []", "at least one execution"),
        ('providers = ["CPUExecutionProvider"]', 'delegates = ["xnnpack"]', "at least one exec"),
        ('precisions = ["int8_static", "fp32"]', 'precisions = ["fp32"]\nthreads = 2', "threads"),
        ('io_type = "float"', 'io_type = "int8"', "second_runtime' runs ONNX, whose I/O is float"),
    ],
)
def test_a_bad_second_runtime_is_a_one_line_error(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert PI_SECOND in PI
    text = PI.replace(PI_SECOND, PI_SECOND.replace(old, new)) if old in PI_SECOND else None
    text = text if text is not None and text != PI else PI.replace(old, new)
    assert text != PI
    with pytest.raises(ProfileError, match=message) as info:
        load_profile_file(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_quantized_io_is_refused_for_onnx(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        BASE.replace("mixed_precision_steps = 3", 'mixed_precision_steps = 3\nio_type = "uint8"'),
    )
    with pytest.raises(ProfileError, match="io_type"):
        load_profile_file(path)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("scale = inf", r"\[image\]: key 'scale' must be a finite number > 0, got inf"),
        ("scale = nan", "key 'scale' must be a finite number > 0"),
        ("scale = -1.0", "key 'scale' must be a finite number > 0"),
        ("scale = 0", "key 'scale' must be a finite number > 0"),
        ("std = [0.0]", "key 'std' must hold numbers > 0"),
        ("std = [-inf]", "key 'std' must hold finite numbers"),
        ("mean = [nan, 0.0, 0.0]", "key 'mean' must hold finite numbers"),
        ("mean = [0.0, 0.0, 0.0, 0.0, 0.0]", "key 'mean' must list 1 value, or one per channel"),
    ],
)
def test_image_values_must_be_finite(tmp_path: Path, image: str, message: str) -> None:
    path = _write(tmp_path, BASE + f"\n[image]\n{image}\n")
    with pytest.raises(ProfileError, match=message):
        load_profile_file(path)


@pytest.mark.parametrize(
    ("scale", "mean", "std", "message"),
    [
        (float("inf"), None, None, "--image-scale must be a finite number > 0, got inf"),
        (float("nan"), None, None, "--image-scale"),
        (None, "nan", None, "--image-mean must hold finite numbers"),
        (None, None, "inf,1,1", "--image-std must hold finite numbers"),
        (None, None, "-1", "--image-std must hold numbers > 0"),
    ],
)
def test_image_flags_must_be_finite(
    scale: float | None, mean: str | None, std: str | None, message: str
) -> None:
    from edge_sdk.core.profiles import override_image

    with pytest.raises(ProfileError, match=message):
        override_image(resolve_profile("x86-64"), scale, mean, std)


def test_fifo_device_and_directory_are_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    (tmp_path / "dir.toml").mkdir()
    for path, kind in (
        (fifo, "is a FIFO"),
        (Path("/dev/zero"), "is a device"),
        (tmp_path / "dir.toml", "is a directory"),
    ):
        with pytest.raises(ProfileError, match=kind):
            resolve_profile(str(path))


def test_oversized_and_deeply_nested_files_are_refused(tmp_path: Path) -> None:
    big = _write(tmp_path, BASE + "#" * (300 * 1024), "big.toml")
    with pytest.raises(ProfileError, match="more than the 256 KiB allowed"):
        load_profile_file(big)
    # 16,000 dotted levels take tomllib a gigabyte; refused before parsing.
    dotted = _write(tmp_path, "a." * 16_000 + "b = 1\n", "dotted.toml")
    with pytest.raises(ProfileError, match="dotted key nested more than 32 levels"):
        load_profile_file(dotted)
    arrays = _write(tmp_path, "a = " + "[" * 50_000, "arrays.toml")
    with pytest.raises(ProfileError, match="nest too deep"):
        load_profile_file(arrays)


def test_a_bad_profile_is_one_line_at_the_cli(tmp_path: Path, cli: Any) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    code, _, err = cli("build", "model.onnx", "--profile", str(fifo))
    assert code == 2
    assert "is a FIFO" in err and "Traceback" not in err and len(err.splitlines()) == 1
