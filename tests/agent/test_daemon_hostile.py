"""Desired state from a hostile or unlucky broker (issue 11, classes 1, 2 and 12).

Nothing a remote party sends may end the daemon: the inbox fed hostile payloads never raises,
reports the refusal and keeps serving, across restarts too (a retained message comes back at
every start). An older validly signed assignment put back as the retained message after a
restart is a replay: refused, and the journal serial does not go backwards. A trust root that
is not a root stops ``edge-agent run`` at start, in one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.cli import run as agent_cli
from agent.config import load_config
from agent.daemon import Agent
from agent.update.serials import FILE
from edge_sdk.client import InferenceClient
from edge_sdk.core.wire.assignment import Assignment, sign_assignment
from edge_sdk.core.wire.topics import Topics
from edge_sdk.signing.keys import load_signer
from testing.agents import (
    REPO,
    SAMPLES,
    Operator,
    agent_thread,
    committed,
    make_bundle,
    retained_status,
    start_process,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker
from tests.fuzz import mutations

TOPICS = Topics("edge", "default")
DEVICE_TOPIC = TOPICS.desired_device("dev-1", "digits")
GROUP_TOPIC = TOPICS.desired_group("default", "digits")
LATER = datetime.now(UTC) + timedelta(days=30)


def signed(keyring: Path, assignment: Assignment) -> bytes:
    return sign_assignment(assignment, [load_signer(keyring / "online-1.key")], expires=LATER)


def with_float(payload: bytes) -> bytes:
    """The issue's example: a real signed envelope with a float put in its signed part, so
    canonical JSON (what the signature covers) cannot be made of it."""
    doc = json.loads(payload)
    doc["signed"]["custom"]["assignment"]["serial"] = 5.5
    return json.dumps(doc).encode()


def with_int_keyid(payload: bytes) -> bytes:
    doc = json.loads(payload)
    doc["signatures"][0]["keyid"] = 12345
    return json.dumps(doc).encode()


def hostile_payloads(keyring: Path) -> list[bytes]:
    real = signed(keyring, Assignment("digits", 9, "devices/dev-1", 99))
    return [
        with_float(real),
        with_int_keyid(real),
        real.replace(b'"serial": 99', b'"serial": NaN'),
        b"[" * 100_000,
        b'{"signed": {"version": ' + b"9" * 5000 + b"}}",
        b"\xff\xfe\x00",
    ]


def retained(broker: Broker, topic: str) -> bytes:
    got: list[bytes] = []
    client = broker.client()
    client.on_message = lambda _c, _u, msg: got.append(msg.payload)
    client.subscribe(topic, qos=1)
    wait_for(lambda: bool(got), 5.0, f"the retained message on {topic}")
    client.disconnect()
    client.loop_stop()
    return got[-1]


def reported(broker: Broker, phrase: str) -> bool:
    return phrase in (retained_status(broker) or {}).get("assignment_error", "")


# -- the inbox, in this process ----------------------------------------------------------------


def test_the_inbox_refuses_hostile_payloads_and_never_raises(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """Not started (no broker link): the decision alone, fed thousands of inputs."""
    agent = Agent(load_config(write_config(tmp_path / "dev", broker, keyring / "root.json")))
    for payload in hostile_payloads(keyring):
        agent.assignment_error = ""
        agent._on_desired(DEVICE_TOPIC, payload, True)
        agent._drain_inbox()
        assert "refused" in agent.assignment_error, payload[:80]
        assert "\n" not in agent.assignment_error
    seed = signed(keyring, Assignment("digits", 1, "devices/dev-1", 1))
    for case in mutations(seed=1121, seeds=[seed], count=1500):
        agent._on_desired(DEVICE_TOPIC, case, True)
        agent._on_desired(GROUP_TOPIC, case, True)
        agent._drain_inbox()
    assert agent.updaters["digits"].journal.state.value == "idle"  # nothing was acted on


def test_the_last_resort_guard_reports_an_unexpected_error_and_goes_on(
    tmp_path: Path, broker: Broker, keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a future bug lets through verification is a refusal, not the end of the daemon
    (a fake here, beside the real payloads above)."""
    agent = Agent(load_config(write_config(tmp_path / "dev", broker, keyring / "root.json")))

    def broken(_payload: bytes) -> Assignment:
        raise TypeError("'int' object is not subscriptable")

    monkeypatch.setattr(agent, "_verify", broken)
    agent._on_desired(DEVICE_TOPIC, b"anything", True)
    agent._drain_inbox()
    assert agent.assignment_error == (
        f"assignment on {DEVICE_TOPIC} refused: TypeError: 'int' object is not subscriptable"
    )


def test_a_running_agent_refuses_hostile_desired_state_and_keeps_serving(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:  # raises on exit if run() raised
        operator.assign(1)
        wait_for(committed(config, 1))
        for payload in hostile_payloads(keyring):
            agent.assignment_error = ""
            operator.raw(GROUP_TOPIC, payload)
            wait_for(lambda: "refused" in agent.assignment_error, 10.0, "the refusal")
        wait_for(lambda: reported(broker, "refused"), what="the refusal in the status")
        assert agent.updaters["digits"].slot.version == 1
        assert store(config).current() == 1


# -- across restarts, as a process and in this process -----------------------------------------


def test_a_hostile_retained_message_does_not_stop_the_agent_across_a_restart(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    socket_path = tmp_path / "api.sock"
    config = write_config(
        tmp_path / "dev", broker, keyring / "root.json", serving={"unix_socket": str(socket_path)}
    )
    log = tmp_path / "agent.log"
    operator.assign(1)
    operator.raw(GROUP_TOPIC, with_float(retained(broker, DEVICE_TOPIC)))  # before any start
    for start in range(2):
        process = start_process(config, log)
        try:
            wait_for(committed(config, 1), 60.0, "v1 committed")
            wait_for(lambda: reported(broker, "refused"), what="the refusal in the status")
            wait_for(socket_path.exists, what="the API socket")
            with InferenceClient(unix_socket=str(socket_path)) as client:
                assert client.predict("digits", {"input": SAMPLES[:1]}).version == 1
            assert process.poll() is None, f"start {start}: agent exited:\n{log.read_text()}"
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0, log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        # The next start must report the refusal anew, not leave this one's status standing.
        operator.raw(TOPICS.status("dev-1"), b"")
    assert "Traceback" not in log.read_text()


def test_an_older_signed_assignment_put_back_after_a_restart_is_a_refused_replay(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """A superseded signed rollback, put back as the retained message while the agent is
    down, must not roll the device back when it starts."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    operator.publish(make_bundle(keyring, 2))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1))
        operator.assign(2)
        wait_for(committed(config, 2))
        rollback = operator.assign(1, rollback=True)
        old = retained(broker, DEVICE_TOPIC)
        wait_for(lambda: store(config).load_journal().serial == rollback.serial)
        wait_for(lambda: store(config).current() == 1, what="rolled back to v1")
        latest = operator.assign(2)
        wait_for(committed(config, 2))
    floors = json.loads((load_config(config).state_dir / FILE).read_bytes())["floors"]
    assert floors == {"devices/dev-1": {"digits": latest.serial}}

    # A plain restart: the retained copy of the latest assignment is no refusal.
    with agent_thread(config) as agent:
        time.sleep(1.5)
        assert agent.assignment_error == ""
        assert store(config).load_journal().serial == latest.serial

    operator.raw(DEVICE_TOPIC, old)  # put back while the agent is down
    with agent_thread(config) as agent:
        wait_for(lambda: "replayed assignment" in agent.assignment_error, what="the refusal")
        time.sleep(1.0)
        journal = store(config).load_journal()
        assert store(config).current() == 2 and agent.updaters["digits"].slot.version == 2
        assert journal.serial == latest.serial and journal.state.value == "committed"
        wait_for(lambda: reported(broker, "replayed"), what="the replay in the status")


# -- a trust root that is not a root (class 12) ------------------------------------------------


@pytest.mark.parametrize("kind", ["public key", "targets file", "empty", "garbage", "fifo"])
def test_edge_agent_run_refuses_a_trust_root_that_is_not_a_root_at_start(
    tmp_path: Path,
    broker: Broker,
    keyring: Path,
    kind: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "root.json"
    if kind == "public key":
        bad.write_bytes((keyring / "online-1.pub").read_bytes())
    elif kind == "targets file":
        bad.write_bytes(signed(keyring, Assignment("digits", 1, "devices/dev-1", 1)))
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "garbage":
        bad.write_bytes(os.urandom(512))
    else:
        os.mkfifo(bad)
    config = write_config(tmp_path / "dev", broker, bad)
    if kind == "fifo":  # in a process: a blocking read must not hang the test run
        done = subprocess.run(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO,
        )
        code, err = done.returncode, done.stderr
    else:
        capsys.readouterr()
        code = agent_cli(["run", "--config", str(config)])
        err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and str(bad) in err, err
    assert "Traceback" not in err


def test_a_flood_from_an_unknown_key_costs_one_root_refresh_and_bounded_memory(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """An assignment signed by a key the device does not know may come from a key rotated in
    since its last refresh, so it walks the root once; but anyone who can publish could make
    every message cost that walk, and fill memory with messages waiting for it. One refresh
    per interval; what waits is the latest per desired topic of a managed model."""
    from edge_sdk.core.trust import TrustRoot
    from edge_sdk.signing.keys import init_keys

    stranger = tmp_path / "stranger"
    init_keys(stranger, online_keys=1, threshold=1)
    signer = load_signer(stranger / "online-1.key")
    agent = Agent(load_config(write_config(tmp_path / "dev", broker, keyring / "root.json")))
    refreshes: list[float] = []
    root = TrustRoot.from_bytes((keyring / "root.json").read_bytes(), "root")

    class Session:
        def refresh(self) -> None:
            refreshes.append(agent.now())

        def trusted_root(self) -> TrustRoot:
            return root

    agent.tuf_session = Session  # type: ignore[assignment,method-assign]
    for serial in range(1, 301):
        for model in ("digits", f"unmanaged-{serial}"):
            for scope, topic in (
                ("devices/dev-1", TOPICS.desired_device("dev-1", model)),
                ("groups/default", TOPICS.desired_group("default", model)),
            ):
                payload = sign_assignment(
                    Assignment(model, 1, scope, serial), [signer], expires=LATER
                )
                agent._on_desired(topic, payload, True)
        agent._drain_inbox()
    assert len(refreshes) == 1
    assert set(agent._awaiting_root) == {DEVICE_TOPIC, GROUP_TOPIC}
    assert agent.updaters["digits"].journal.state.value == "idle"
