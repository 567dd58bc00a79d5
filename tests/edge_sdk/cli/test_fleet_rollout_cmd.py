"""``edge-sdk fleet rollout|rollback``: every bad input is one line and exit 2, found before any
connection is tried (the broker URL points at a port nobody listens on)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge_sdk.fleet.publish import open_or_create
from testing.agents import make_bundle
from testing.mosquitto import free_port

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def common(tmp_path: Path, keyring: Path) -> list[str | Path]:
    repo = tmp_path / "repo"
    open_or_create(repo, keyring).add_bundle(make_bundle(keyring, 1))
    # Nothing listens here: a command that tried to connect would fail differently.
    return ["--repo", repo, "--keys", keyring, "--broker", f"mqtt://127.0.0.1:{free_port()}"]


def one_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["digits", "1", "--waves", "1,0,100%"], "--waves '1,0,100%': '0' is neither"),
        (["digits", "1", "--waves", "150%"], "is neither a device count"),
        (["digits", "1", "--max-failure-rate", "2"], "--max-failure-rate 2 must be between 0"),
        (["digits", "1", "--probation", "-1"], "--probation -1 must be"),
        (["digits", "1", "--max-latency-ratio", "0.9"], "--max-latency-ratio 0.9 must be >= 1"),
        (["digits", "1", "--group", "a/b"], "--group: 'a/b' must be"),
        (["digits", "1", "--group", "+"], "--group: '+' must be"),
        (["dig its", "1"], "model name 'dig its'"),
        (["digits", "v1"], "--version 'v1' must be"),
        (["digits", "7"], "digits v7 is not in"),
        (["digits"], "give the VERSION to roll out, or --resume"),
        (["digits", "--resume"], "nothing to resume:"),
        (["digits", "1", "--broker", "http://x"], "is not mqtt://HOST"),
        (["digits", "1", "--broker", "mqtts://127.0.0.1:1"], "no --ca was given"),
    ],
)
def test_rollout_bad_input_is_one_line_before_connecting(
    cli: Cli, common: list[str | Path], args: list[str], message: str
) -> None:
    code, _, err = cli("fleet", "rollout", *common, *args)
    assert message in one_error(code, err)


def test_resume_names_a_version_that_is_not_the_recorded_one(
    cli: Cli, common: list[str | Path], tmp_path: Path
) -> None:
    from edge_sdk.fleet.rollout import Gate, Phase, Rollout
    from edge_sdk.fleet.rollout_run import save

    record = Rollout("digits", 1, "1", "x86-64", None, (("a",),), Gate(), {"a": None})
    save(tmp_path / "repo", record)
    code, _, err = cli("fleet", "rollout", "digits", "2", "--resume", *common)
    assert "the recorded rollout is of v1, not 2" in one_error(code, err)
    # A rollout still in progress blocks a new one, and says how to continue or stop it.
    assert record.phase == Phase.ASSIGNING
    code, _, err = cli("fleet", "rollout", "digits", "1", *common)
    line = one_error(code, err)
    assert "a rollout of digits v1 is still assigning (wave 1/1)" in line
    assert "--resume" in line and "fleet rollback digits" in line


def test_a_corrupt_rollout_record_is_named(
    cli: Cli, common: list[str | Path], tmp_path: Path
) -> None:
    path = tmp_path / "repo" / "rollouts" / "digits.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"model": "digits"}')
    code, _, err = cli("fleet", "rollout", "digits", "--resume", *common)
    assert f"{path} is not a rollout record" in one_error(code, err)


@pytest.mark.parametrize(
    "args, message",
    [
        (["digits"], "no rollout of digits in"),
        (["digits", "--to", "x"], "--version 'x' must be"),
        (["digits", "--to", "1", "--group", "#"], "--group: '#' must be"),
    ],
)
def test_rollback_bad_input_is_one_line(
    cli: Cli, common: list[str | Path], args: list[str], message: str
) -> None:
    code, _, err = cli("fleet", "rollback", *common, *args)
    assert message in one_error(code, err)


@pytest.mark.parametrize("command", ["rollout", "rollback"])
def test_unusable_tls_files_are_one_line_before_connecting(
    cli: Cli, common: list[str | Path], tmp_path: Path, command: str
) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    args = ["digits", "1"] if command == "rollout" else ["digits", "--to", "1"]
    tls = ["--broker", f"mqtts://127.0.0.1:{free_port()}", "--ca", garbage]
    code, _, err = cli("fleet", command, *common, *tls, *args)
    assert "cannot load the TLS files (--ca/--client-cert/--client-key)" in one_error(code, err)
