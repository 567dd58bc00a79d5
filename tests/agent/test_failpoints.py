"""EDGE_AGENT_FAILPOINTS: what any text gives (failpoints or one line), round trips, and that
nothing is read unless the variable is set."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.cli import run
from agent.failpoints import (
    ENV,
    NAMES,
    OFF,
    Failpoints,
    failpoints_from_environ,
    parse_failpoints,
)
from edge_sdk.errors import ConfigError

STEP = st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z")
COUNT = st.integers(0, 2**53 - 1)
SECONDS = st.floats(0, 1e9, allow_nan=False, allow_infinity=False)
FAILPOINTS = st.builds(
    Failpoints,
    crash_at=st.just("") | STEP,
    crash_after_chunks=COUNT,
    disk_full_after_bytes=COUNT,
    chunk_delay_s=SECONDS,
    bench_slow_precision=st.just("") | STEP,
    bench_slow_ms=SECONDS,
)


def test_examples() -> None:
    assert parse_failpoints("crash_at=verifying") == Failpoints(crash_at="verifying")
    assert parse_failpoints(" crash_at = download ; crash_after_chunks=2 ;") == Failpoints(
        crash_at="download", crash_after_chunks=2
    )
    assert parse_failpoints("bench_slow_precision=int8_static;bench_slow_ms=20") == Failpoints(
        bench_slow_precision="int8_static", bench_slow_ms=20.0
    )
    assert parse_failpoints("chunk_delay_s=0.1;disk_full_after_bytes=4800000") == Failpoints(
        chunk_delay_s=0.1, disk_full_after_bytes=4_800_000
    )
    assert parse_failpoints("") == parse_failpoints(" ; ;") == OFF


def test_read_only_when_set() -> None:
    assert failpoints_from_environ({}) is OFF
    assert failpoints_from_environ({"OTHER": "crash_at=x"}) is OFF
    assert failpoints_from_environ({ENV: "crash_at=pruning"}).crash_at == "pruning"
    with pytest.raises(ConfigError):
        failpoints_from_environ({ENV: "crash_at"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("crash_at", "'crash_at' is not NAME=VALUE"),
        ("crash_att=verifying", "'crash_att' is not a failpoint (did you mean 'crash_at'?)"),
        ("zzz=1", "failpoints: crash_at, crash_after_chunks"),
        ("crash_at=a;crash_at=b", "crash_at is set twice"),
        ("crash_at=", "crash_at='' must be 1-64 letters"),
        ("crash_at=a b", "must be 1-64 letters"),
        ("crash_after_chunks=-1", "must be an integer between 0 and 9007199254740991"),
        ("crash_after_chunks=2.5", "must be an integer"),
        ("crash_after_chunks=" + "9" * 5000, "must be an integer"),
        ("crash_after_chunks=\u00b2", "must be an integer"),
        ("chunk_delay_s=inf", "must be a number between 0 and 1e+09"),
        ("chunk_delay_s=nan", "must be a number"),
        ("chunk_delay_s=-0.5", "must be a number"),
        ("chunk_delay_s=1e300", "must be a number"),
        ("chunk_delay_s=1_0", "must be a number"),
        ("bench_slow_ms=fast", "must be a number"),
    ],
)
def test_malformed_is_one_line_naming_the_variable(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_failpoints(text)
    line = str(info.value)
    assert line.startswith(f"{ENV}: ") and message in line, line
    assert "\n" not in line and f"unset {ENV}" in line


@given(FAILPOINTS)
def test_to_env_round_trips(failpoints: Failpoints) -> None:
    assert parse_failpoints(failpoints.to_env()) == failpoints


@given(FAILPOINTS, st.randoms())
def test_term_order_and_blanks_do_not_matter(failpoints: Failpoints, rng: object) -> None:
    terms = [t for t in failpoints.to_env().split(";") if t]
    rng.shuffle(terms)  # type: ignore[attr-defined]
    spaced = " ;; ".join(f" {t.replace('=', ' = ')} " for t in terms)
    assert parse_failpoints(spaced) == failpoints


@given(st.lists(st.sampled_from([*NAMES, "=", ";", " ", "1", "0.5", "x", "-", "\n"])))
def test_any_text_of_its_words_gives_failpoints_or_one_line(words: list[str]) -> None:
    _check("".join(words))


@given(st.text(max_size=80))
def test_any_unicode_gives_failpoints_or_one_line(text: str) -> None:
    _check(text)


def _check(text: str) -> None:
    try:
        failpoints = parse_failpoints(text)
    except ConfigError as e:
        assert str(e).startswith(f"{ENV}: ") and "\n" not in str(e)
        return
    for name in ("chunk_delay_s", "bench_slow_ms"):
        value = getattr(failpoints, name)
        assert math.isfinite(value) and 0 <= value <= 1e9
    assert 0 <= failpoints.crash_after_chunks <= 2**53 - 1


def test_edge_agent_run_refuses_malformed_failpoints_as_a_bad_config(
    tmp_path: Path,
    keyring: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'device_id = "cam-01"\nprofile = "x86-64"\nstate_dir = "state"\n'
        f'trust_root = "{keyring / "root.json"}"\n'
        '[broker]\nurl = "mqtt://127.0.0.1:1"\n[[models]]\nname = "digits"\n'
    )
    monkeypatch.setenv(ENV, "crash_at=verifying;crash_after_chunks=many")
    capsys.readouterr()
    code = run(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and f"{ENV}: crash_after_chunks='many'" in err
    assert not (tmp_path / "state").exists()  # refused before anything started
