"""``edge-agent run`` and ``status`` as a user and systemd see them: one-line config errors,
local status without a broker, SIGTERM stops cleanly, and the Last Will marks a killed device
offline."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli import run
from edge_sdk.core.wire.topics import Topics
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    start_process,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text('device_id = "cam/01"\n')
    code, _, err = invoke(capsys, "run", "--config", str(bad))
    assert code == 2
    assert err.count("\n") == 1 and "device_id" in err and "Traceback" not in err


def test_a_missing_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "status", "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and err.count("\n") == 1 and "nope.toml" in err


@pytest.mark.parametrize("command", ["run", "status"])
def test_an_unreadable_kind_of_config_is_one_line_not_a_hang(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    import os

    fifo = tmp_path / "agent.toml"
    os.mkfifo(fifo)  # reading it would block forever
    for path, kind in ((fifo, "is a FIFO"), ("/dev/zero", "is a device"), (tmp_path, "directory")):
        code, _, err = invoke(capsys, command, "--config", str(path))
        assert code == 2, err
        assert err.count("\n") == 1 and kind in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "status"])
def test_a_state_dir_that_is_a_file_is_one_line(
    tmp_path: Path, keyring: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    (tmp_path / "state").write_text("a file, not a directory")
    config = tmp_path / "agent.toml"
    config.write_text(
        'device_id = "cam-01"\nprofile = "x86-64"\nstate_dir = "state"\n'
        f'trust_root = "{keyring / "root.json"}"\n'
        '[broker]\nurl = "mqtt://127.0.0.1:1"\n[[models]]\nname = "digits"\n'
    )
    code, _, err = invoke(capsys, command, "--config", str(config))
    assert code == 2, err
    assert err.count("\n") == 1 and "state_dir" in err and "is not a directory" in err


def test_status_reads_the_state_directory_without_a_broker(
    tmp_path: Path, broker: Broker, keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1))
    broker.stop()
    code, out, _ = invoke(capsys, "status", "--config", str(config), "--json")
    assert code == 0
    digits = json.loads(out)["models"]["digits"]
    assert digits["version"] == 1 and digits["installed"] == [1]
    assert digits["state"] == "committed" and digits["last_event"]["to"] == "committed"
    # The integers for machines, the label the version was built with for people.
    assert digits["label"] == "1.0.1" and digits["installed_labels"] == ["1.0.1"]
    code, out, _ = invoke(capsys, "status", "--config", str(config))
    assert code == 0 and "digits: running 1.0.1, installed 1.0.1, state committed" in out
    assert "[1]" not in out


def presence_watcher(broker: Broker) -> tuple[list[dict[str, object]], Callable[[], None]]:
    seen: list[dict[str, object]] = []
    client = broker.client()
    client.on_message = lambda _c, _u, msg: seen.append(json.loads(msg.payload))
    client.subscribe(Topics("edge", "default").presence("dev-1"), qos=1)

    def close() -> None:
        client.disconnect()
        client.loop_stop()

    return seen, close


def test_sigterm_stops_cleanly_and_says_offline(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    seen, close = presence_watcher(broker)
    process = start_process(config, tmp_path / "agent.log")
    try:
        wait_for(lambda: {"online": True} in seen, what="online presence")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        wait_for(lambda: seen[-1] == {"online": False}, what="offline presence")
    finally:
        close()
        if process.poll() is None:
            process.kill()


def test_a_killed_agent_is_marked_offline_by_its_last_will(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    seen, close = presence_watcher(broker)
    process = start_process(config, tmp_path / "agent.log")
    try:
        wait_for(lambda: {"online": True} in seen, what="online presence")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        started = time.monotonic()
        wait_for(lambda: seen[-1] == {"online": False}, what="the Will")
        assert time.monotonic() - started < 5  # the broker sees the socket close at once
    finally:
        close()


def test_an_address_in_use_is_one_line_and_exit_2(
    tmp_path: Path, broker: Broker, keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "dev", broker, keyring / "root.json", serving={"listen": f"127.0.0.1:{port}"}
        )
        code, _, err = invoke(capsys, "run", "--config", str(config))
    assert code == 2
    assert err.count("\n") == 1 and "serving" in err and f"127.0.0.1:{port}" in err
