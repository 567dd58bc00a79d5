"""What used to go wrong silently for an operator, against a real Mosquitto and real agents:
an assignment of a version never published, a rollout of the version a device already runs
(it waited out its whole wave timeout, then halted), and a rollout that said nothing while it
waited."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_sdk.errors import InputError
from edge_sdk.fleet.publish import assign
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    retained_message,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker, free_port

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def operator(tmp_path: Path, broker: Broker, keyring: Path) -> Operator:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    return operator


def options(operator: Operator, broker: str) -> tuple[str | Path, ...]:
    return ("--repo", operator.repo_dir, "--keys", operator.keyring, "--broker", broker)


def test_assign_refuses_a_version_the_repository_does_not_hold(
    cli: Cli, operator: Operator, broker: Broker
) -> None:
    desired = operator.topics.desired_device("dev-1", "digits")
    # Said before connecting: no broker listens here, and the answer is still the version.
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    for url in (nowhere, broker.url):
        code, out, err = cli(
            "fleet", "assign", "digits", "9.9.9", "--device", "dev-1", *options(operator, url)
        )
        assert code == 2 and not out
        (line,) = err.splitlines()
        assert "digits 9.9.9 is not published in" in line and "it holds 1" in line, line
        assert "fleet publish" in line
    # The library refuses too, before anything is signed or sent.
    with operator.link() as link, pytest.raises(InputError, match=r"9\.9\.9 is not published"):
        assign(
            operator.keyring,
            operator.repo_dir,
            link,
            operator.topics,
            model="digits",
            version=9_009_009,
            scope="devices/dev-1",
        )
    assert retained_message(broker, desired) is None
    # A published version is still assigned.
    code, out, err = cli(
        "fleet", "assign", "digits", "1", "--device", "dev-1", *options(operator, broker.url)
    )
    assert code == 0 and "assigned digits v1 to devices/dev-1" in out, err
    code, out, err = cli(
        "fleet",
        "assign",
        "digits",
        "1",
        "--group",
        "lobby",
        *options(operator, broker.url),
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["version"] == 1 and json.loads(out)["version_label"] == "1"


@pytest.fixture()
def device(tmp_path: Path, broker: Broker, operator: Operator) -> Iterator[Path]:
    """dev-1 serving digits 1.0.1 (v1), committed; its probation lasts 2 s."""
    config = write_config(tmp_path / "dev", broker, operator.keyring / "root.json", probation_s=2)
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1), 60, "dev-1 on v1")
        yield config


def test_a_rollout_of_the_version_a_device_already_runs_finishes_at_once(
    cli: Cli, operator: Operator, broker: Broker, device: Path
) -> None:
    # A version that fails its self-test leaves the device serving v1 with its journal
    # "failed": not committed, so only the device's acknowledgement can pass it.
    operator.publish(make_bundle(operator.keyring, 2, break_golden=True))
    operator.assign(2)
    wait_for(lambda: store(device).load_journal().state.value == "failed", 60, "v2 failing")
    started = time.monotonic()
    code, out, err = cli(
        "fleet",
        "rollout",
        "digits",
        "1",
        "--probation",
        "0",
        "--wave-timeout",
        "30",
        *options(operator, broker.url),
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and result["devices"]["dev-1"]["verdict"] == "passed"
    assert time.monotonic() - started < 30  # not the wave timeout
    journal = store(device).load_journal()
    assert journal.state.value == "committed" and journal.version == 1
    events = [h["event"] for h in journal.history]
    assert events[-1] == "already_serving" and events.count("assigned") == 2  # nothing fetched
    # Reported against the rollout's own serial (its last phase: the group assignment).
    record = json.loads((operator.repo_dir / "rollouts" / "digits.json").read_text())
    wait_for(lambda: store(device).load_journal().serial == record["serial"], 10, "the ack")


def test_a_rollout_says_where_it_stands_while_it_waits(
    cli: Cli, operator: Operator, broker: Broker, device: Path
) -> None:
    operator.publish(make_bundle(operator.keyring, 3))
    beat = ("--probation", "0", "--heartbeat", "0.3")
    code, out, err = cli("fleet", "rollout", "digits", "3", *beat, *options(operator, broker.url))
    assert code == 0, err
    beats = [line for line in err.splitlines() if "waiting:" in line]
    # The device's 2 s probation is waited out with a line every 0.3 s.
    assert len(beats) >= 2, err
    assert all("wave 1/1:" in b for b in beats), beats
    # A beat while a device is pending says when the wave times out; one that lands after the
    # device passed, while the wave closes, has nothing to time out (a race on a loaded host).
    assert all("timeout in" in b for b in beats if "pending" in b), beats
    assert any("1 pending" in b for b in beats), beats
    assert "rollout of digits v3 completed: 1 devices" in out


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_bad_heartbeat_is_one_line_before_connecting(
    cli: Cli, tmp_path: Path, keyring: Path, value: str
) -> None:
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    where = ("--repo", tmp_path / "repo", "--keys", keyring, "--broker", nowhere)
    code, _, err = cli("fleet", "rollout", "digits", "1", "--heartbeat", value, *where)
    assert code == 2
    (line,) = err.splitlines()
    assert "--heartbeat" in line and "seconds >= 0" in line, line
