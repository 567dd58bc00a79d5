"""The fleet side's reading of what devices publish (``edge_sdk.fleet.inventory``) under hostile
input: every status and presence payload a device (or anyone holding its certificate) can
retain, and the enrolment records ``fleet status`` reads from disk. Nothing may raise, memory
stays bounded, garbage is that device's ``problem``, and the fields that are good survive."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.core.wire.protocol import MAX_STATUS_BYTES
from edge_sdk.core.wire.untrusted_json import MAX_DEPTH, MAX_TEXT_CHARS
from edge_sdk.fleet import status as fleet_status
from edge_sdk.fleet.inventory import DeviceView, parse_presence, parse_status, read_document
from tests.edge_sdk.core.wire.test_protocol_fuzz import agent_status, json_values
from tests.fuzz import mutations

GOOD = json.dumps(agent_status(), sort_keys=True).encode()
PRESENCE = (b'{"online": true}', b'{"online": false}')


def test_a_real_status_reads_whole() -> None:
    v = parse_status("dev-1", GOOD)
    assert (v.problem, v.group, v.profile, v.at) == ("", "lab", "x86-64", "2024-05-01T10:00:05Z")
    m = v.models["digits"]
    assert (m.version, m.state, m.serial, m.last_result, m.last_result_version) == (
        3,
        "committed",
        7,
        "committed",
        3,
    )
    assert m.inference is not None and m.inference.p95_ms == 4.25
    assert parse_presence(PRESENCE[0]) is True and parse_presence(PRESENCE[1]) is False


HOSTILE: dict[str, tuple[bytes, str]] = {
    # json.loads recursed once per level and raised RecursionError out of paho's thread.
    "100 KB of [": (b"[" * 100_000, "nests deeper than"),
    "deep objects": (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nests deeper than"),
    "deep models": (
        b'{"models": {"m": {"version": ' + b"[" * 50 + b"]" * 50 + b"}}}",
        "nests deeper than",
    ),
    # Python refuses to turn 4300+ digits into an int with a ValueError, not a JSONDecodeError.
    "huge int": (b'{"models": {"m": {"version": ' + b"9" * 5000 + b"}}}", "not JSON"),
    "NaN": (b'{"at": NaN}', "not JSON"),
    "Infinity": (b'{"models": {"m": {"serial": -Infinity}}}', "not JSON"),
    "binary": (b"\xff\xfe\x00garbage", "not UTF-8"),
    "over the size limit": (b'{"group": "' + b"a" * MAX_STATUS_BYTES + b'"}', "byte limit"),
    "not an object": (b"[1, 2]", "not a JSON object"),
    "truncated": (GOOD[: len(GOOD) // 2], "not JSON"),
}


@pytest.mark.parametrize("payload, problem", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_status_is_a_problem_not_an_exception(payload: bytes, problem: str) -> None:
    view = parse_status("bad-1", payload)
    assert problem in view.problem and view.models == {}
    assert "\n" not in view.problem and len(view.problem) < 300
    # Presence goes through the same reader: nothing readable, nothing raised.
    assert parse_presence(payload) is None


def test_wrong_types_and_out_of_range_values_fall_back_per_field() -> None:
    doc = agent_status()
    doc["group"] = {"nested": ["x"]}
    doc["profile"] = 12
    doc["at"] = "\x1b[2J\x1b]0;owned\x07" + "x" * (3 * MAX_TEXT_CHARS)
    model = doc["models"]["digits"]
    model.update(version="@1e999@", serial=-1, target_version=2**80, state=["committed"])
    model["inference"] = {"count": True, "error_rate": "@1e999@", "latency_ms": [1, 2]}
    doc["models"]["\x1b[31mred"] = {"version": 1, "state": "idle"}
    doc["models"][""] = {"version": 1}
    doc["models"]["x" * 500] = {"version": 1}
    doc["models"]["not-a-table"] = [1]
    # 1e999 is valid JSON text that Python reads as inf (json.dumps would write "Infinity").
    view = parse_status("dev-1", json.dumps(doc).replace('"@1e999@"', "1e999").encode())
    assert (view.problem, view.group, view.profile) == ("", "", "")
    assert "\x1b" not in view.at and "\x07" not in view.at and len(view.at) == MAX_TEXT_CHARS
    m = view.models["digits"]
    assert (m.version, m.serial, m.target_version, m.state) == (None, 0, None, "unknown")
    assert m.inference is not None
    assert (m.inference.count, m.inference.error_rate, m.inference.p95_ms) == (0, 0.0, 0.0)
    # The good parts of the same report survive.
    assert m.last_result == "committed" and m.probation is not None
    assert m.probation.p95_ms == 4.25
    assert sorted(view.models) == ["digits", "\ufffd[31mred"]


def test_escaped_brackets_inside_strings_are_not_nesting() -> None:
    doc = agent_status(group="[[[[" * 50)
    doc["models"]["digits"]["reason"] = '\\"' + "{" * 200
    view = parse_status("dev-1", json.dumps(doc).encode())
    assert view.problem == "" and view.group == "[[[[" * 50
    assert view.models["digits"].reason.endswith("{" * 200)
    depth_ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert read_document(depth_ok, 1024) == (json.loads(depth_ok), "")


def test_an_unterminated_string_of_escaped_quotes_is_read_in_linear_time() -> None:
    payload = b'"' + b'\\"' * (MAX_STATUS_BYTES // 2 - 1)
    started = time.perf_counter()
    assert "not JSON" in parse_status("bad-1", payload).problem
    assert time.perf_counter() - started < 2.0


# -- Hypothesis: any JSON anywhere in a real status ----------------------------------------

_FIELDS = ("assignment_error", "at", "models", "profile", "uptime_s", "device", "fleet")
_MODEL_FIELDS = ("version", "state", "serial", "last_result", "inference", "probation", "reason")


@given(where=st.sampled_from(_FIELDS), value=json_values)
def test_any_json_in_a_status_field_leaves_the_rest_readable(where: str, value: object) -> None:
    doc = agent_status()
    doc[where] = value
    view = parse_status("dev-1", json.dumps(doc).encode())
    assert view.problem == "" and view.group == "lab"
    if where != "models":
        assert view.models["digits"].version == 3


@given(where=st.sampled_from(_MODEL_FIELDS), value=json_values)
def test_any_json_in_a_model_field_leaves_the_rest_readable(where: str, value: object) -> None:
    doc = agent_status()
    doc["models"]["digits"][where] = value
    view = parse_status("dev-1", json.dumps(doc).encode())
    model = view.models["digits"]
    assert view.problem == "" and view.group == "lab"
    if where != "version":
        assert model.version == 3
    if where != "inference":
        assert model.inference is not None and model.inference.count == 120


@settings(max_examples=300)
@given(payload=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_never_raise(payload: bytes) -> None:
    view = parse_status("dev-1", payload)
    assert isinstance(view, DeviceView)
    assert parse_presence(payload) in (True, False, None)


@given(depth=st.integers(min_value=0, max_value=3000), opener=st.sampled_from(["[", '{"a":']))
def test_any_nesting_depth_is_read_or_refused(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    view = parse_status("dev-1", (opener * depth + "1" + closer * depth).encode())
    if depth > MAX_DEPTH:
        assert "nests deeper" in view.problem
    elif opener == "[" or depth == 0:
        assert view.problem == "status is not a JSON object"
    else:
        assert view.problem == ""


# -- seeded fuzz loop ----------------------------------------------------------------------


def test_fuzzed_status_and_presence_never_raise_and_stay_bounded() -> None:
    seeds = [GOOD, json.dumps(agent_status(group="g2", version=9)).encode(), *PRESENCE]
    tracemalloc.start()
    try:
        started = time.perf_counter()
        readable = 0
        for case in mutations(seed=13, seeds=seeds, count=3000):
            view = parse_status("dev-1", case)
            assert isinstance(view, DeviceView)
            assert parse_presence(case) in (True, False, None)
            readable += not view.problem
            for model in view.models.values():
                assert model.version is None or 0 <= model.version < 2**63
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert readable > 0  # the loop reached past the JSON reader, into the field parsing
    assert peak < 32 * 1024 * 1024
    assert time.perf_counter() - started < 60


def test_fuzzed_enrolment_records_never_hide_a_device(tmp_path: Path) -> None:
    directory = tmp_path / fleet_status.ENROLLED_DIR
    directory.mkdir()
    good = json.dumps({"device": "dev-1", "fleet": "default", "group": "lab", "profile": "x"})
    for i, case in enumerate(mutations(seed=7, seeds=[good.encode()], count=400)):
        (directory / f"dev-{i}.json").write_bytes(case)
    (directory / "deep.json").write_bytes(b"[" * 100_000)
    (directory / "big.json").write_bytes(b'{"group": "' + b"a" * (1 << 20) + b'"}')
    found = fleet_status.load_enrolled(tmp_path, "default")
    assert found["deep"].group == "" and found["big"].group == ""
    assert found["dev-0"].group == "lab"
    assert len(found) >= 300  # only records naming another fleet drop out
