"""Power cut at every step: the agent runs as a real process and is killed with SIGKILL at each
step of an update (the ``crash_at`` failpoint in ``EDGE_AGENT_FAILPOINTS``), then restarted.

Every time it dies, the device must still hold a verified model (old or new) behind an intact
``current`` pointer and a readable journal; after the restart the update completes or rolls
back. Each step is cut once and then restarted cleanly, and cut on every restart, which the
agent must recognise as a crash loop instead of retrying forever.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent.update.machine import RESTING, State
from edge_sdk.core.bundle import read_unpacked
from edge_sdk.core.trust import verify_bundle
from edge_sdk.signing.keys import load_trust_root
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    padded_model,
    start_process,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker

MAX_RESTARTS = 2
# Journal states (the kill comes right after the journal entry is on disk, before the step's
# action) and the moments between an action and its journal entry.
UPDATE_STEPS = [
    "downloading",
    "download",  # after 2 chunks of the download are stored
    "verifying",
    "installed",  # the version directory is in place, the journal still says verifying
    "staged",
    "activating",
    "switched",  # `current` names the new version, the journal still says activating
    "probation",
    "committed",
]
ROLLBACK_STEPS = ["rolling_back", "rolled_back_switch"]


def assert_intact(config: Path, trust: Path, expected: set[int]) -> int:
    """`current` names an installed version whose files verify; the journal reads."""
    s = store(config)
    s.load_journal()  # raises on a torn or corrupt journal
    version = s.current()
    assert version in expected, f"current is {version}, expected one of {expected}"
    directory = s.version_dir(version)
    verify_bundle(load_trust_root(trust), read_unpacked(directory), str(directory))
    return version


def run_until_killed_or_done(
    config: Path, log: Path, serial: int, failpoints: str = "", timeout: float = 60.0
) -> int | None:
    """Start the agent (with ``failpoints``); return -9 if it was killed, None once the update
    `serial` is at rest (the agent is then stopped with SIGTERM)."""
    process = start_process(config, log, failpoints)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                assert code == -signal.SIGKILL, f"agent exited {code}:\n{log.read_text()[-3000:]}"
                return code
            journal = store(config).load_journal()
            if journal.serial == serial and journal.state in RESTING:
                # A kill right after the final journal entry is still a kill.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    if process.wait(0.5) == -signal.SIGKILL:
                        return -signal.SIGKILL
                return None
            time.sleep(0.05)
        raise AssertionError(f"agent neither died nor settled:\n{log.read_text()[-3000:]}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def prepare(
    tmp_path: Path, broker: Broker, keyring: Path, *, v2_committed: bool
) -> tuple[Operator, Path]:
    """v1 committed on the device (and v2 as well when asked); the failpoints passed to
    run_until_killed_or_done inject the crash."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    operator.publish(make_bundle(keyring, 2, artifact=padded_model(300_000, seed=7)))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1))
        if v2_committed:
            operator.assign(2)
            wait_for(committed(config, 2))
    crashing = write_config(
        tmp_path / "dev", broker, keyring / "root.json", max_restarts=MAX_RESTARTS
    )
    return operator, crashing


def crash_failpoints(step: str) -> str:
    if step == "download":
        return "crash_at=download;crash_after_chunks=2"
    return f"crash_at={step}"


@pytest.mark.parametrize("step", UPDATE_STEPS)
def test_cut_once_then_the_update_completes(
    tmp_path: Path, broker: Broker, keyring: Path, step: str
) -> None:
    operator, crashing = prepare(tmp_path, broker, keyring, v2_committed=False)
    crash = crash_failpoints(step)
    serial = operator.assign(2).serial
    log = tmp_path / "agent.log"
    assert run_until_killed_or_done(crashing, log, serial, crash) == -signal.SIGKILL
    assert_intact(crashing, keyring / "root.json", {1, 2})
    assert run_until_killed_or_done(crashing, log, serial) is None  # restarted without failpoints
    assert assert_intact(crashing, keyring / "root.json", {2}) == 2
    assert store(crashing).load_journal().state is State.COMMITTED


@pytest.mark.parametrize("step", UPDATE_STEPS)
def test_cut_at_every_restart_ends_in_a_verified_model(
    tmp_path: Path, broker: Broker, keyring: Path, step: str
) -> None:
    operator, crashing = prepare(tmp_path, broker, keyring, v2_committed=False)
    crash = crash_failpoints(step)
    serial = operator.assign(2).serial
    log = tmp_path / "agent.log"
    kills = 0
    for _ in range(MAX_RESTARTS + 3):
        if run_until_killed_or_done(crashing, log, serial, crash) is None:
            break
        kills += 1
        assert_intact(crashing, keyring / "root.json", {1, 2})
    else:
        raise AssertionError(f"still crashing after {kills} restarts: no crash-loop detection")
    journal = store(crashing).load_journal()
    version = assert_intact(crashing, keyring / "root.json", {1, 2})
    if journal.state is State.COMMITTED:
        assert version == 2  # the cut came after the point of no return (or was passed)
    else:
        # A crash loop: failed before the switch, rolled back after it; never left without v1.
        assert journal.state in (State.FAILED, State.ROLLED_BACK), journal
        assert version == 1 and "crash loop" in journal.reason, journal
    assert kills >= 1


@pytest.mark.parametrize("step", ROLLBACK_STEPS)
def test_cut_during_a_rollback_finishes_the_rollback(
    tmp_path: Path, broker: Broker, keyring: Path, step: str
) -> None:
    operator, crashing = prepare(tmp_path, broker, keyring, v2_committed=True)
    crash = crash_failpoints(step)
    serial = operator.assign(1, rollback=True).serial
    log = tmp_path / "agent.log"
    assert run_until_killed_or_done(crashing, log, serial, crash) == -signal.SIGKILL
    assert_intact(crashing, keyring / "root.json", {1, 2})
    assert run_until_killed_or_done(crashing, log, serial) is None  # restarted without failpoints
    assert assert_intact(crashing, keyring / "root.json", {1}) == 1
    assert store(crashing).load_journal().state is State.ROLLED_BACK
