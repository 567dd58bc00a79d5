"""The candidate decision, on hand-made figures: pure logic, no runtime."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edge_sdk.build.search import Candidate, budget_violation, choose
from edge_sdk.core.fidelity import Fidelity
from edge_sdk.core.profiles import HardwareProfile, resolve_profile
from edge_sdk.errors import BudgetError
from edge_sdk.runtime.timing import LatencyStats

GOOD = Fidelity(1.0, 0.9999, 0.01)
BAD = Fidelity(0.95, 0.97, 2.0)


def lat(p50: float) -> LatencyStats:
    return LatencyStats(p50, p50 * 1.1, p50 * 1.2, p50, 100)


def cand(
    name: str, precision: str, p50: float, fidelity: Fidelity = GOOD, size: int = 1000
) -> Candidate:
    return Candidate(name, precision, {}, size, fidelity, None, lat(p50))


@pytest.fixture()
def cpu() -> HardwareProfile:
    return resolve_profile("x86-64-vnni")


def test_fastest_inside_budget_wins(cpu: HardwareProfile) -> None:
    out = choose([cand("a", "int8_static", 0.5), cand("b", "fp32", 1.0)], cpu, lat(1.0), None)
    assert [c.chosen for c in out] == [True, False]
    assert "fastest" in out[0].reason and "2.00x" in out[0].reason


def test_candidate_slower_than_float_is_rejected_even_if_listed_first(cpu: HardwareProfile) -> None:
    out = choose([cand("dyn", "int8_dynamic", 3.0), cand("fp32", "fp32", 1.0)], cpu, lat(1.0), None)
    assert not out[0].chosen
    assert "slower than the float model (0.33x)" in out[0].reason
    assert out[1].chosen


def test_budget_breaker_is_rejected_with_its_reason(cpu: HardwareProfile) -> None:
    out = choose([cand("q", "int8_static", 0.2, BAD), cand("f", "fp32", 1.0)], cpu, lat(1.0), None)
    assert not out[0].chosen
    assert out[0].reason.startswith("outside accuracy budget: top-1 disagreement 5.00%")
    # The top-1 refusal says how to turn it off for an output that holds no class scores.
    assert "--first-output values" in out[0].reason


def test_near_tie_goes_to_the_smaller_artifact(cpu: HardwareProfile) -> None:
    out = choose(
        [
            cand("big", "int8_dynamic", 0.50, size=4000),
            cand("small", "int8_static", 0.51, size=1000),
        ],
        cpu,
        lat(1.0),
        None,
    )
    assert out[1].chosen


def test_preference_profile_takes_its_order_not_host_speed() -> None:
    orin = resolve_profile("jetson-orin")
    out = choose(
        [cand("int8", "int8_static", 2.0), cand("fp16", "fp16", 5.0), cand("fp32", "fp32", 1.0)],
        orin,
        lat(1.0),
        None,
    )
    assert [c.name for c in out if c.chosen] == ["int8"]
    assert "precision order" in out[0].reason


def test_preference_takes_the_most_faithful_of_the_first_precision_beyond_noise() -> None:
    """The int8 search's variants share a precision: the order cannot tell them apart, their
    fidelity can (PP-OCR's classifier: per-tensor weights 0.99979, per-channel 0.99749)."""
    orin = resolve_profile("jetson-orin")
    per_channel = cand("int8_static-minmax", "int8_static", 2.0, Fidelity(1.0, 0.99749, 0.1))
    per_tensor = cand(
        "int8_static-minmax-per-tensor", "int8_static", 2.0, Fidelity(1.0, 0.99979, 0.1)
    )
    fp16 = cand("fp16", "fp16", 1.0, Fidelity(1.0, 1.0, 0.0))
    out = choose([per_channel, per_tensor, fp16], orin, lat(3.0), None)
    assert [c.name for c in out if c.chosen] == ["int8_static-minmax-per-tensor"]
    assert out[0].reason == "inside budget, but int8_static-minmax-per-tensor is more faithful"
    assert out[2].reason.endswith("comes first in the order")
    # Within noise (0.001), the first in the search's order stays.
    close = replace(per_tensor, fidelity=Fidelity(1.0, 0.99799, 0.1))
    out = choose([per_channel, close, fp16], orin, lat(3.0), None)
    assert [c.name for c in out if c.chosen] == ["int8_static-minmax"]


def test_a_second_runtime_comes_after_the_profiles_own_in_its_order() -> None:
    pi = resolve_profile("raspberry-pi-4")
    preference_pi = replace(pi, selection="preference")  # as on a host that cannot stand in
    onnx_int8 = replace(cand("onnx:int8_static-minmax", "int8_static", 0.5), runtime="onnx")
    onnx_fp32 = replace(cand("onnx:fp32", "fp32", 1.0), runtime="onnx")
    tflite_fp32 = replace(cand("fp32", "fp32", 1.0), runtime="tflite")
    tflite_int8 = replace(cand("int8_full", "int8_full", 0.9), runtime="tflite")
    out = choose([onnx_fp32, onnx_int8, tflite_fp32, tflite_int8], preference_pi, lat(1.0), None)
    assert [c.name for c in out if c.chosen] == ["int8_full"]
    broken = replace(tflite_int8, fidelity=None, error="pass 'onnx2tf' failed: boom")
    out = choose([onnx_fp32, onnx_int8, tflite_fp32, broken], preference_pi, lat(1.0), None)
    assert [c.name for c in out if c.chosen] == ["fp32"]  # TFLite's fp32 before onnxruntime
    out = choose(
        [onnx_fp32, onnx_int8, replace(tflite_fp32, fidelity=None, error="boom"), broken],
        preference_pi,
        lat(1.0),
        None,
    )
    assert [c.name for c in out if c.chosen] == ["onnx:int8_static-minmax"]


def test_accuracy_drop_counts_against_the_budget() -> None:
    budget = resolve_profile("x86-64-vnni").accuracy_budget
    assert budget_violation(GOOD, 0.95, 0.99, budget) == "accuracy drop 4.00% > budget 0.50%"
    assert budget_violation(GOOD, 0.988, 0.99, budget) is None


def test_nothing_inside_budget_is_an_error_listing_every_candidate(cpu: HardwareProfile) -> None:
    failed = replace(
        cand("x", "int8_static", 0.1), fidelity=None, error="pass 'int8_static' failed: boom"
    )
    with pytest.raises(BudgetError, match=r"x: failed to build.*y: outside accuracy budget"):
        choose([failed, cand("y", "int8_dynamic", 0.2, BAD)], cpu, lat(1.0), None)


def test_artifact_over_the_storage_budget_is_out(cpu: HardwareProfile) -> None:
    small = replace(cpu, budget=replace(cpu.budget, storage_mb=1))
    out = choose(
        [cand("huge", "int8_static", 0.1, size=3 * 1024 * 1024), cand("f", "fp32", 1.0, size=10)],
        small,
        lat(1.0),
        None,
    )
    assert not out[0].chosen
    assert out[0].reason == "artifact 3.0 MB exceeds the profile's storage budget of 1 MB"


def test_int8_judged_by_the_host_only_when_it_computes_as_the_target() -> None:
    from edge_sdk.build.search import int8_judge

    assert int8_judge("x86-vnni", "x86-vnni") == "host"
    assert int8_judge("x86-avx2", "x86-avx2") == "host"
    # A host without VNNI saturates u8s8 sums; a VNNI, Arm or TensorRT target does not.
    for target in ("x86-vnni", "arm-dot", "tensorrt"):
        assert int8_judge(target, "x86-avx2") == "exact"
    assert int8_judge("x86-avx2", "x86-vnni") == "exact"


def test_host_int8_kernels_from_cpuinfo_flags() -> None:
    from edge_sdk.core.profiles import host_int8_kernels

    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert host_int8_kernels(avx2, "x86_64") == "x86-avx2"
    assert host_int8_kernels(avx2.replace("fma", "fma avx512_vnni"), "x86_64") == "x86-vnni"
    assert host_int8_kernels(avx2.replace("fma", "avx_vnni"), "x86_64") == "x86-vnni"
    assert host_int8_kernels("", "aarch64") == "arm-dot"
    assert host_int8_kernels("", "x86_64") == "x86-avx2"  # unreadable: the cautious answer


def test_report_shows_both_figures_and_which_judged() -> None:
    from edge_sdk.cli._report import int8_judging_lines

    exact, host = Fidelity(0.995, 0.992, 0.1), Fidelity(0.97, 0.94, 0.9)
    c = replace(
        cand("int8_static-minmax", "int8_static", 0.5, exact),
        exact_fidelity=exact,
        host_fidelity=host,
        judged_by="exact",
    )
    same = replace(c, name="twin", host_fidelity=exact)
    report = {
        "candidates": [c.to_json(), same.to_json()],
        "int8_arithmetic": {"target": "x86-vnni", "host": "x86-avx2", "judged_by": "exact"},
    }
    (line,) = int8_judging_lines(report)
    assert "int8_static-minmax" in line and "0.9920" in line and "0.9400" in line
    assert "judged by exact QDQ simulation" in line and "x86-avx2" in line


def test_report_shows_each_output_of_the_chosen_and_the_best_int8() -> None:
    """One cosine over four heads hid that a keypoint model's int8 lost its presence score."""
    from edge_sdk.cli._report import per_output_lines

    names = ["landmarks", "presence", "handedness", "world"]
    fp32 = replace(cand("fp32", "fp32", 1.0, Fidelity(None, 1.0, 0.0, (1.0,) * 4)), chosen=True)
    best = cand(
        "int8_mixed-4", "int8_static", 0.5, Fidelity(None, 0.91, 0.3, (0.998, 0.72, 0.8, 0.96))
    )
    worse = cand("int8_static-minmax", "int8_static", 0.5, Fidelity(None, 0.85, 0.4, (0.99,) * 4))
    report = {"outputs": names, "candidates": [c.to_json() for c in (worse, best, fp32)]}
    lines = per_output_lines(report)
    assert lines == [
        "per output, fp32: landmarks 1.0000, presence 1.0000, handedness 1.0000, world 1.0000",
        "per output, int8_mixed-4: landmarks 0.9980, presence 0.7200, handedness 0.8000, "
        "world 0.9600",
    ]
    assert per_output_lines({**report, "outputs": ["only"]}) == []  # one output: its cosine
