"""The Jetson profiles keep TensorRT's engine and timing caches in the installed version's
directory. TensorRT is not on this host, so the options the session would get are checked as
built from the real profile files, and a Jetson bundle still runs on the CPU fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge_sdk
from edge_sdk.build.candidates import runtime_settings
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.golden import check_bundle
from edge_sdk.core.profiles import builtin_profile_dir, resolve_profile
from edge_sdk.errors import ProfileError
from edge_sdk.runtime import load_bundle, named_outputs
from edge_sdk.runtime.ort import TRT_CACHE_DIR, provider_options


@pytest.mark.parametrize("name", ["jetson-orin", "jetson-nano"])
def test_jetson_profiles_cache_engines_in_the_version_directory(name: str, tmp_path: Path) -> None:
    profile = resolve_profile(name)
    settings = runtime_settings(profile, profile.precisions[0])
    assert settings["tensorrt_cache"] is True
    version_dir = tmp_path / "models" / "digits" / "versions" / "7"
    options = dict(
        zip(
            profile.providers,
            provider_options(profile.providers, settings, version_dir),
            strict=True,
        )
    )
    cache = str(version_dir / TRT_CACHE_DIR)
    assert options["TensorrtExecutionProvider"] == {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
    }
    assert options["CUDAExecutionProvider"] == {} and options["CPUExecutionProvider"] == {}


def test_no_cache_without_a_version_directory_or_the_setting(tmp_path: Path) -> None:
    jetson = resolve_profile("jetson-orin")
    settings = runtime_settings(jetson, "fp16")
    # The host's own sessions (build, bench) have no version directory to keep an engine in.
    assert provider_options(jetson.providers, settings, None) == [{}, {}, {}]
    x86 = resolve_profile("x86-64")
    assert "tensorrt_cache" not in runtime_settings(x86, "fp32")
    trt = ["TensorrtExecutionProvider"]
    assert provider_options(trt, runtime_settings(x86, "fp32"), tmp_path) == [{}]
    assert provider_options(trt, {"tensorrt_cache": "yes"}, tmp_path) == [{}]


def test_tensorrt_cache_needs_tensorrt_in_the_profile(tmp_path: Path) -> None:
    text = (builtin_profile_dir() / "x86-64.toml").read_text()
    path = tmp_path / "x86-cache.toml"
    path.write_text(text.replace('runtime = "onnx"', 'runtime = "onnx"\ntensorrt_cache = true'))
    with pytest.raises(ProfileError, match="tensorrt_cache"):
        resolve_profile(str(path))


def test_jetson_bundle_installed_runs_on_the_cpu_fallback(digits: Path, tmp_path: Path) -> None:
    result = edge_sdk.build(
        digits / "model.onnx",
        profile="jetson-nano",
        calibration=digits / "calibration.npz",
        out=tmp_path / "out",
        timing_seconds=0.2,
    )
    bundle = read_bundle(result.bundle_path)
    assert bundle.manifest.runtime_settings["tensorrt_cache"] is True
    version_dir = tmp_path / "versions" / "1"  # as the agent installs it (agent.update.store)
    version_dir.mkdir(parents=True)
    artifact = version_dir / bundle.manifest.artifact
    artifact.write_bytes(bundle.artifact)
    model = load_bundle(bundle, threads=2, artifact_path=artifact)
    check = check_bundle(bundle, named_outputs(model, bundle.manifest.outputs))
    assert check.passed, check.detail
    # Without TensorRT nothing is cached: the CPU provider got no TensorRT options.
    assert not (version_dir / TRT_CACHE_DIR).exists()
    with np.load(digits / "validation.npz") as v:
        assert model.run({"input": v["input"][:4]})[0].shape == (4, 10)
