"""The inference API's front ends as ``[serving]`` asks for them (agent/serving/front_ends.py):
none when nothing is asked, HTTP on loopback and a Unix socket started and stopped together, an
address already held is the operator's configuration error in one line, and gRPC asked for
without grpcio says which extra to install. The daemon's own runs: tests/agent/test_cli.py,
tests/agent/serving/test_grpc_server.py, tests/agent/serving/test_tritonclient.py."""

from __future__ import annotations

import http.client
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.config import ServingConfig
from agent.metrics import Metrics
from agent.serving.front_ends import FrontEnds
from agent.serving.slots import ServingSlot
from edge_sdk.errors import ConfigError


def front_ends(tmp_path: Path, **serving: Any) -> FrontEnds:
    config = SimpleNamespace(
        path=tmp_path / "agent.toml",
        serving=ServingConfig(**serving),
        models=[SimpleNamespace(name="digits", batch_window_ms=0.0, max_batch=1)],
    )
    return FrontEnds(config, {"digits": ServingSlot("digits")}, Metrics())  # type: ignore[arg-type]


def test_nothing_asked_starts_nothing(tmp_path: Path) -> None:
    ends = front_ends(tmp_path, listen="")
    ends.start()
    assert ends.http == [] and ends.grpc == []
    ends.stop()


def test_loopback_and_a_unix_socket_start_and_stop_together(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    ends = front_ends(tmp_path, listen="127.0.0.1:0", host="127.0.0.1", port=0, unix_socket=path)
    ends.start()
    try:
        tcp, unix = ends.http
        assert tcp.started and tcp.bound_port > 0 and unix.unix_socket == str(path)
        connection = http.client.HTTPConnection("127.0.0.1", tcp.bound_port, timeout=5)
        connection.request("GET", "/v2/health/live")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        ends.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", tcp.bound_port), 1):
        pass


def test_an_address_in_use_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        ends = front_ends(tmp_path, listen=f"127.0.0.1:{port}", host="127.0.0.1", port=port)
        with pytest.raises(ConfigError) as refused:
            ends.start()
        ends.stop()
    message = str(refused.value)
    assert "\n" not in message and "serving.listen" in message
    assert message.startswith(f"{tmp_path / 'agent.toml'}: serving: ")


def test_grpc_without_grpcio_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "agent.serving.grpc_server", None)  # as if grpcio were missing
    ends = front_ends(tmp_path, listen="", grpc_listen="127.0.0.1:0", grpc_host="127.0.0.1")
    with pytest.raises(ConfigError, match=r"pip install 'edgesdk-fleet\[grpc\]'"):
        ends.start()
    assert ends.grpc == []
