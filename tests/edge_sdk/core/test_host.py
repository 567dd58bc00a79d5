"""Host honesty: which hosts stand in for which targets (pure, with injected host descriptions),
and a real digits build on a host that cannot stand in for x86-64-vnni."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from edge_sdk.build import pipeline as build_module
from edge_sdk.cli._report import print_build_report
from edge_sdk.core.host import (
    HostDescription,
    detect,
    parse_cpuinfo,
    selecting,
    verdict_for,
)
from edge_sdk.core.profiles import builtin_profile_dir, load_profile_file, resolve_profile
from edge_sdk.errors import ProfileError

X86_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma"
CPU = ["CPUExecutionProvider"]


def x86(*extra: str) -> HostDescription:
    info = f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {X86_FLAGS} {' '.join(extra)}\n"
    return detect(info, "x86_64", CPU)


def test_cpuinfo_features_on_x86_and_arm() -> None:
    assert x86().features == ("avx2",) and x86().int8_kernels == "x86-avx2"
    assert x86("avx512f", "avx512_vnni").features == ("avx2", "avx512", "vnni")
    assert x86("avx_vnni").int8_kernels == "x86-vnni"
    assert x86().cpu == "Test CPU"
    pi5 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp\n"
    assert parse_cpuinfo(pi5, "aarch64") == ("", ("dotprod", "neon"))
    # Arm flags never read as x86 features and the other way round.
    assert parse_cpuinfo("flags : asimddp avx2", "x86_64")[1] == ("avx2",)
    assert parse_cpuinfo("Features : avx2", "arm64")[1] == ("neon",)


def test_which_hosts_stand_in() -> None:
    vnni, avx2 = resolve_profile("x86-64-vnni"), resolve_profile("x86-64")
    assert vnni.cpu_features == ("avx2", "vnni")
    assert verdict_for(vnni, x86("avx512_vnni")).ok
    lacking = verdict_for(vnni, x86())
    assert not lacking.ok and lacking.why == "this host lacks vnni, which the target has"
    # A host with more than the target stands in (fidelity is judged in the target's arithmetic).
    assert verdict_for(avx2, x86("avx512_vnni")).ok
    assert (
        "is x86_64, the target aarch64" in verdict_for(resolve_profile("arm64-generic"), x86()).why
    )
    orin = verdict_for(resolve_profile("jetson-orin"), x86("avx512_vnni"))
    assert not orin.ok and "tensorrt" in orin.why
    pi5 = detect("Features : asimd asimddp", "aarch64", CPU)
    pi4 = detect("Features : asimd", "aarch64", CPU)
    profile = replace(resolve_profile("arm64-generic"), cpu_features=("neon", "dotprod"))
    assert verdict_for(profile, pi5).ok and not verdict_for(profile, pi4).ok
    gpu = replace(avx2, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert "lacks CUDAExecutionProvider" in verdict_for(gpu, x86()).why


def test_selection_falls_back_to_the_profiles_order_off_a_stand_in() -> None:
    vnni = resolve_profile("x86-64-vnni")
    assert selecting(vnni, verdict_for(vnni, x86("avx512_vnni"))).selection == "fastest"
    assert selecting(vnni, verdict_for(vnni, x86())).selection == "preference"


def test_standing_for_another_host_keeps_the_rest_of_it() -> None:
    host = x86("avx512f", "avx512_vnni")
    assert host.with_int8_kernels("x86-avx2").features == ("avx2", "avx512")
    assert x86().with_int8_kernels("x86-vnni").int8_kernels == "x86-vnni"


def test_profile_cpu_features_are_checked(tmp_path: Path) -> None:
    text = (builtin_profile_dir() / "x86-64.toml").read_text()
    path = tmp_path / "p.toml"
    path.write_text(text.replace('cpu_features = ["avx2"]', 'cpu_features = ["avx512_vnni"]'))
    with pytest.raises(ProfileError, match=r"cpu_features.*avx2, avx512, vnni, neon, dotprod"):
        load_profile_file(path)
    path.write_text(text.replace('cpu_features = ["avx2"]\n', ""))
    assert load_profile_file(path).cpu_features == ()  # unsaid: int8_kernels' defaults apply
    assert verdict_for(load_profile_file(path), x86()).ok


@given(st.text(max_size=400), st.sampled_from(["x86_64", "aarch64", "armv7l", "riscv64", ""]))
def test_any_cpuinfo_text_parses_to_known_features(text: str, machine: str) -> None:
    cpu, features = parse_cpuinfo(text, machine)
    assert len(cpu) <= 120 and list(features) == sorted(set(features))
    assert set(features) <= {"avx2", "avx512", "vnni", "neon", "dotprod"}


@pytest.fixture(scope="module")
def no_vnni_digits(tmp_path_factory: pytest.TempPathFactory, digits: Path) -> dict[str, Any]:
    return build_module.build(
        build_module.BuildRequest(
            model=digits / "model.onnx",
            profile=resolve_profile("x86-64-vnni"),
            out=tmp_path_factory.mktemp("no-vnni"),
            calibration=digits / "calibration.npz",
            validation=digits / "validation.npz",
            timing_seconds=0.2,
            host=x86("avx512f"),  # an AVX-512 host without VNNI, building for a VNNI target
        )
    ).report


def test_a_host_without_vnni_says_so_and_chooses_by_the_profiles_order(
    no_vnni_digits: dict[str, Any],
) -> None:
    r = no_vnni_digits
    assert r["timed_on_stand_in"] is False and r["selection"] == "preference"
    assert r["host"]["cpu_features"] == ["avx2", "avx512"] and r["host"]["cpu"] == "Test CPU"
    assert r["host"]["providers"] == CPU and r["host"]["int8_kernels"] == "x86-avx2"
    # The profile's first precision inside the budget ships, whatever this host timed.
    assert r["precision"] == "int8_static"
    chosen = next(c for c in r["candidates"] if c["chosen"])
    assert "precision order" in chosen["reason"]
    assert not any(c["reason"].startswith("slower than") for c in r["candidates"])
    console = Console(file=io.StringIO(), width=400)
    print_build_report(console, r)
    lines = [
        line
        for line in console.file.getvalue().splitlines()  # type: ignore[attr-defined]
        if line.startswith("host:")
    ]
    assert lines == [
        "host: host timings are this host's only: this host lacks vnni, which the target has, "
        "so it cannot stand in for x86-64-vnni; chosen by the profile's precision order within "
        "the accuracy budget (measure on a device with --measure-on DEVICE)"
    ]


def test_build_json_carries_the_host(
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    digits: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_build = build_module.build

    def on_this_host(request: build_module.BuildRequest, **kw: Any) -> build_module.BuildResult:
        return real_build(replace(request, timing_seconds=0.05), **kw)

    monkeypatch.setattr(build_module, "build", on_this_host)
    code, stdout, err = cli(
        "build", digits / "model.onnx", "--profile", "jetson-nano", "--out", tmp_path, "--json"
    )
    assert code == 0, err
    r = json.loads(stdout)
    assert r["timed_on_stand_in"] is False  # a TensorRT target: no CPU stands in for it
    assert r["host"] == detect().to_json()
    assert "tensorrt" in r["stand_in_line"]
