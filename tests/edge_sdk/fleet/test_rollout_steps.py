"""The rollout's running steps (edge_sdk.fleet.rollout_steps): each device's verdict, a wave's
judgement, the record's next phase and what each phase publishes, with device views built by
hand (test_rollout.py's): no broker."""

from __future__ import annotations

from dataclasses import replace

from edge_sdk.fleet.inventory import DeviceView, Figures, ModelView
from edge_sdk.fleet.rollout import Gate, Order, Phase, Rollout, Verdict, summary
from edge_sdk.fleet.rollout_steps import (
    advance,
    device_verdict,
    health_regression,
    judge_wave,
    orders,
    published,
    wave_progress,
)
from tests.edge_sdk.fleet.test_rollout import V, device, planned

# --- per device ---------------------------------------------------------------------------------


def test_device_verdicts_follow_the_serial_this_rollout_published() -> None:
    r = planned()
    now = 1010.0
    verdict = lambda v: device_verdict(r, v, now, baked=True).verdict  # noqa: E731
    assert verdict(device("x", version=V, state="committed", serial=100)) == Verdict.PASSED
    assert verdict(device("x", version=1, state="downloading", serial=100)) == Verdict.PENDING
    assert verdict(device("x", version=1, state="committed", serial=7)) == Verdict.PENDING
    failed = device_verdict(
        r, device("x", state="failed", serial=100, reason="golden"), now, baked=True
    )
    assert failed.verdict == Verdict.FAILED and "failed: golden" in failed.reason
    assert verdict(device("x", state="rolled_back", serial=100)) == Verdict.FAILED
    # A failure of an older assignment is not this rollout's.
    assert verdict(device("x", state="failed", serial=99)) == Verdict.PENDING
    refused = device("x", last_result="refused", last_result_version=V)
    assert verdict(refused) == Verdict.FAILED
    assert verdict(device("x", online=False)) == Verdict.OFFLINE
    assert verdict(None) == Verdict.OFFLINE


def test_an_online_device_that_never_answers_fails_at_the_wave_timeout() -> None:
    r = replace(planned(), gate=Gate(wave_timeout_s=30))
    silent = device("x", state="downloading", serial=100)
    assert device_verdict(r, silent, 1029.0, baked=False).verdict == Verdict.PENDING
    late = device_verdict(r, silent, 1031.0, baked=False)
    assert late.verdict == Verdict.FAILED and "--wave-timeout 30 s (downloading)" in late.reason


def test_health_regression_compares_against_the_incumbent_on_the_same_device() -> None:
    gate = Gate(max_latency_ratio=1.5, max_error_rate_increase=0.01, min_requests=20)
    old = Figures(count=100, errors=0, error_rate=0.0, p50_ms=1.0, p95_ms=2.0)
    same = Figures(count=100, errors=0, error_rate=0.0, p50_ms=1.0, p95_ms=2.5)
    slow = replace(same, p95_ms=3.2)
    failing = replace(same, errors=5, error_rate=0.05)
    few = replace(slow, count=5)
    m = ModelView("digits", V, "committed", previous=old)
    assert health_regression(replace(m, inference=same), gate) == ""
    assert "1.6x the incumbent's 2.00 ms" in health_regression(replace(m, inference=slow), gate)
    assert "error rate 5.0%" in health_regression(replace(m, inference=failing), gate)
    assert health_regression(replace(m, inference=few), gate) == ""  # too few to judge
    # Without a baseline, only the error rate can be judged (against zero).
    assert health_regression(replace(m, inference=slow, previous=None), gate) == ""
    assert health_regression(replace(m, inference=failing, previous=None), gate) != ""


def test_a_regression_fails_the_device_only_after_the_bake() -> None:
    r = planned()
    slow = device(
        "x",
        version=V,
        serial=100,
        inference=Figures(100, 0, 0.0, 1.0, 9.0),
        previous=Figures(100, 0, 0.0, 1.0, 1.0),
    )
    assert device_verdict(r, slow, 1001.0, baked=False).verdict == Verdict.PASSED
    assert device_verdict(r, slow, 1001.0, baked=True).verdict == Verdict.FAILED


# --- per wave -----------------------------------------------------------------------------------


def wave_views(r: Rollout, **kw: object) -> dict[str, DeviceView]:
    return {d: device(d, **kw) for d in r.waves[r.wave]}  # type: ignore[arg-type]


def test_one_failure_halts_at_once_with_no_tolerance() -> None:
    r = replace(planned(20, "1,10,100%"), wave=1)
    views = wave_views(r, state="downloading", serial=100)
    first = r.waves[1][0]
    views[first] = device(first, state="failed", serial=100, reason="selftest")
    judged = judge_wave(r, views, 1001.0)
    assert judged.halt.startswith("wave 2: 1 of 9 devices failed (limit 0%)")
    assert f"first: {first}: failed: selftest" in judged.halt


def test_failures_within_the_rate_let_the_wave_pass() -> None:
    r = replace(planned(20, "1,10,100%", Gate(max_failure_rate=0.2)), wave=1)
    views = wave_views(r, version=V, serial=100)
    views[r.waves[1][0]] = device(r.waves[1][0], state="failed", serial=100)
    judged = judge_wave(r, views, 1001.0)
    assert not judged.halt and judged.settled and judged.passed
    assert judged.count(Verdict.FAILED) == 1 and judged.count(Verdict.PASSED) == 8


def test_offline_devices_are_counted_not_waited_for() -> None:
    r = replace(planned(20, "1,10,100%"), wave=1)
    views = wave_views(r, version=V, serial=100)
    for d in r.waves[1][:3]:
        views[d] = device(d, online=False)
    judged = judge_wave(r, views, 1001.0)
    assert judged.passed and judged.count(Verdict.OFFLINE) == 3


def test_a_canary_wave_with_nobody_online_halts_instead_of_passing_blind() -> None:
    r = planned(10, "1,100%")
    judged = judge_wave(r, wave_views(r, online=False), 1001.0)
    assert "no device online to judge" in judged.halt


def test_the_bake_holds_a_settled_wave_then_judges_health_again() -> None:
    r = planned(10, "1,100%", Gate(bake_s=30))
    views = wave_views(r, version=V, serial=100)
    judged = judge_wave(r, views, 1001.0)
    assert judged.settled and not judged.passed
    baking = advance(r, judged, 1001.0, 0)
    assert baking.phase == Phase.WATCHING and baking.settled_at == 1001.0
    assert advance(baking, judge_wave(baking, views, 1010.0), 1010.0, 0) is baking
    done = judge_wave(baking, views, 1031.5)
    assert done.passed
    nxt = advance(baking, done, 1031.5, 200)
    assert (nxt.phase, nxt.wave, nxt.serial, nxt.settled_at) == (Phase.ASSIGNING, 1, 200, 0.0)
    # A device that regressed during the bake fails the wave when it ends.
    canary = r.waves[0][0]
    views[canary] = device(
        canary,
        version=V,
        serial=100,
        inference=Figures(50, 10, 0.2, 1.0, 1.0),
        previous=Figures(50, 0, 0.0, 1.0, 1.0),
    )
    assert "error rate 20.0%" in judge_wave(baking, views, 1031.5).halt


# --- phases and orders --------------------------------------------------------------------------


def test_phases_publish_what_they_say_then_move_on() -> None:
    r = replace(planned(4, "1,100%"), phase=Phase.ASSIGNING)
    assert orders(r) == (Order(f"devices/{r.waves[0][0]}", V),)
    watching = published(r, 1001.0)
    assert watching.phase == Phase.WATCHING and watching.since == 1001.0
    views = {d: device(d, version=V, serial=100) for d in r.devices}
    last = advance(
        replace(watching, wave=1), judge_wave(replace(watching, wave=1), views, 1002.0), 1002.0, 300
    )
    assert last.phase == Phase.FINALIZING and orders(last) == (Order("groups/lobby", V),)
    assert published(last, 1003.0).phase == Phase.COMPLETED
    assert orders(published(last, 1003.0)) == ()


def test_a_halt_rolls_every_reached_device_back_to_what_it_ran() -> None:
    r = replace(planned(6, "1,3,100%"), wave=1)
    r = replace(r, incumbents={**r.incumbents, r.waves[1][0]: None})
    views = wave_views(r, state="failed", serial=100)
    halted = advance(r, judge_wave(r, views, 1001.0), 1001.0, 400)
    assert halted.phase == Phase.ROLLING_BACK and halted.serial == 400 and halted.reason
    # Waves 1 and 2 were reached; the device with nothing before it has nothing to go back to.
    assert orders(halted) == (
        Order(f"devices/{r.waves[0][0]}", 1, rollback=True),
        Order(f"devices/{r.waves[1][1]}", 1, rollback=True),
    )
    final = published(halted, 1002.0)
    assert final.phase == Phase.HALTED
    result = summary(final)
    assert result["status"] == "halted" and result["waves"][2]["reached"] is False
    assert result["rolled_back"] == [r.waves[0][0], r.waves[1][1]]


def test_the_live_line_says_where_the_wave_stands() -> None:
    r = replace(planned(20, "1,10,100%", Gate(bake_s=30, wave_timeout_s=600)), wave=1)
    views = wave_views(r, state="downloading", serial=100)
    for d in r.waves[1][:4]:
        views[d] = device(d, version=V, serial=100)
    views[r.waves[1][4]] = device(r.waves[1][4], online=False)
    line = wave_progress(r, judge_wave(r, views, 1100.0), 1100.0)
    assert line == "wave 2/3: 4 passed, 4 pending, 1 offline; timeout in 500 s"
    baking = replace(r, settled_at=1090.0)
    done = {d: device(d, version=V, serial=100) for d in r.waves[1]}
    line = wave_progress(baking, judge_wave(baking, done, 1100.0), 1100.0)
    assert line == "wave 2/3: 9 passed; watching health, 20 s left"
