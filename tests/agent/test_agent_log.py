"""``edge-agent run --verbose`` says where it serves and whether it reaches its broker, before any
assignment arrives: the agent as a real process, its log read as an operator would."""

from __future__ import annotations

import re
from pathlib import Path

from testing.agents import Operator, make_bundle, start_process, wait_for, write_config
from testing.mosquitto import Broker


def test_the_log_says_where_the_agent_serves_and_when_it_is_connected(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    serving = {"listen": "127.0.0.1:0", "grpc_listen": "127.0.0.1:0"}
    config = write_config(tmp_path / "dev", broker, keyring / "root.json", serving=serving)
    log = tmp_path / "agent.log"
    process = start_process(config, log)
    try:
        connected = f"connected to mqtt://127.0.0.1:{broker.port} as dev-1"
        wait_for(lambda: connected in log.read_text(), 30, "the connection in the log")
        text = log.read_text()
        http = re.search(r"serving on http://127\.0\.0\.1:(\d+)", text)
        assert http is not None and int(http.group(1)) > 0, text
        grpc = re.search(r"serving gRPC on grpc://127\.0\.0\.1:(\d+)", text)
        assert grpc is not None and int(grpc.group(1)) > 0, text
        # A lost broker is said, and so is the reconnection once it is back.
        broker.stop()
        wait_for(lambda: "disconnected from mqtt://" in log.read_text(), 30, "the loss")
        broker.start()
        wait_for(lambda: log.read_text().count(connected) == 2, 30, "the reconnection")
        # Each step of an update names the version as its user wrote it: 1.0.0, not 1000000.
        operator = Operator(keyring, tmp_path / "repo", broker)
        operator.publish(make_bundle(keyring, 1_000_000))
        operator.assign(1_000_000)
        done = "digits 1.0.0: probation_passed -> committed"
        wait_for(lambda: done in log.read_text(), 60, "the update in the log")
        assert "1000000" not in log.read_text()
    finally:
        process.terminate()
        process.wait(15)
