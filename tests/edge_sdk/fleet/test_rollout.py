"""The rollout's record and its plan (edge_sdk.fleet.rollout), with device views built by hand:
no broker. The running steps are test_rollout_steps.py's, on these same helpers."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edge_sdk.errors import InputError
from edge_sdk.fleet.inventory import DeviceView, Figures, ModelView, parse_status
from edge_sdk.fleet.rollout import (
    Gate,
    Phase,
    Rollout,
    parse_waves,
    plan,
    wave_sizes,
)
from edge_sdk.fleet.rollout_steps import (
    advance,
    judge_wave,
    orders,
)

V = 2  # the version rolled out; devices run 1 before it


def device(
    name: str,
    *,
    version: int | None = 1,
    state: str = "committed",
    serial: int = 0,
    online: bool | None = True,
    group: str = "lobby",
    profile: str = "x86-64",
    reason: str = "",
    inference: Figures | None = None,
    previous: Figures | None = None,
    last_result: str = "",
    last_result_version: int | None = None,
) -> DeviceView:
    model = ModelView(
        "digits",
        version,
        state,
        serial=serial,
        reason=reason,
        inference=inference,
        previous=previous,
        last_result=last_result,
        last_result_version=last_result_version,
    )
    return DeviceView(
        name, online, group, profile, at="2026-11-30T00:00:00Z", models={"digits": model}
    )


def fleet(n: int, **kw: object) -> dict[str, DeviceView]:
    return {f"d{i:02d}": device(f"d{i:02d}", **kw) for i in range(n)}  # type: ignore[arg-type]


def planned(n: int = 10, steps: str = "1,50%,100%", gate: Gate | None = None) -> Rollout:
    r = plan("digits", V, "2", "x86-64", fleet(n), steps=parse_waves(steps), gate=gate or Gate())
    return replace(r, phase=Phase.WATCHING, serial=100, since=1000.0)


# --- planning -----------------------------------------------------------------------------------


def test_waves_mix_counts_and_percentages_cumulatively() -> None:
    assert wave_sizes(parse_waves("1,10%,50%,100%"), 20) == (1, 2, 10, 20)
    assert wave_sizes(parse_waves("1,10%,50%,100%"), 300) == (1, 30, 150, 300)
    # Steps that add nobody are dropped; counts never exceed the fleet.
    assert wave_sizes(parse_waves("1,1%,2,100%"), 3) == (1, 2, 3)
    assert wave_sizes(parse_waves("5,100%"), 2) == (2,)
    assert wave_sizes(parse_waves("1,50%"), 10) == (1, 5)


@pytest.mark.parametrize("bad", ["", "0", "1,,2", "-1", "abc", "101%", "0%", "1.5", "10 %x"])
def test_bad_wave_specs_are_one_clear_error(bad: str) -> None:
    with pytest.raises(InputError, match="--waves"):
        parse_waves(bad)


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_failure_rate", 1.5),
        ("max_failure_rate", -0.1),
        ("bake_s", -1.0),
        ("wave_timeout_s", float("nan")),
        ("max_latency_ratio", 0.5),
        ("max_error_rate_increase", 2.0),
    ],
)
def test_gate_rejects_nonsense_thresholds(field: str, value: float) -> None:
    with pytest.raises(InputError):
        Gate(**{field: value})  # type: ignore[arg-type]


def test_plan_puts_online_devices_first_and_skips_what_cannot_take_the_release() -> None:
    views = fleet(6)
    views["d00"] = replace(views["d00"], online=False)
    views["other"] = device("other", profile="raspberry-pi-4")
    views["elsewhere"] = device("elsewhere", group="yard")
    views["bare"] = DeviceView("bare", online=True, group="lobby", at="2026-11-30T00:00:00Z")
    r = plan("digits", V, "2", "x86-64", views, steps=("1", "100%"), gate=Gate(), group="lobby")
    assert len(r.waves) == 2 and len(r.waves[0]) == 1 and len(r.devices) == 6
    assert r.waves[-1][-1] == "d00"  # the offline device goes last
    assert r.waves[0][0] != "d00"
    assert r.skipped == {
        "other": "profile raspberry-pi-4: the release has a variant for x86-64",
        "bare": "does not manage digits",
    }
    assert r.incumbents == dict.fromkeys(r.devices, 1)
    assert r.groups == ("lobby",)
    # The same rollout planned again picks the same canary; another version may not.
    again = plan("digits", V, "2", "x86-64", views, steps=("1", "100%"), gate=Gate(), group="lobby")
    assert again.waves == r.waves


def test_a_rollout_that_stops_short_of_everyone_assigns_no_group() -> None:
    r = plan("digits", V, "2", "x86-64", fleet(10), steps=("1", "50%"), gate=Gate())
    assert r.groups == ()
    assert orders(replace(r, phase=Phase.FINALIZING)) == ()


def test_plan_with_no_target_says_where_to_look() -> None:
    with pytest.raises(InputError, match="no device in group yard runs digits"):
        plan("digits", V, "2", "x86-64", fleet(3), steps=("100%",), gate=Gate(), group="yard")


def test_the_record_survives_json() -> None:
    r = advance(planned(8, "1,100%"), judge_wave(planned(8, "1,100%"), {}, 1001.0), 1001.0, 9)
    again = Rollout.from_json(json.loads(json.dumps(r.to_json())))
    assert again == r


def test_status_parsing_never_raises_on_garbage() -> None:
    assert parse_status("x", b"not json").problem.startswith("status is not JSON")
    assert parse_status("x", b"[1]").problem == "status is not a JSON object"
    weird = parse_status("x", b'{"models": {"digits": {"version": "7", "serial": true}}}')
    m = weird.model("digits")
    assert m is not None and m.version is None and m.serial == 0 and m.state == "unknown"
