"""agent.toml's [broker], [serving] and [store] read on their own: the broker URL through the
one broker address type, loopback-only serving, the store's CA checked at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config_network import (
    BROKER_KEYS,
    SERVING_KEYS,
    BrokerConfig,
    read_broker,
    read_serving,
)
from agent.config_values import ConfigTable
from edge_sdk.core.wire.broker_address import BrokerAddress
from edge_sdk.errors import ConfigError


def section(name: str, keys: tuple[str, ...], values: dict[str, Any]) -> ConfigTable:
    return ConfigTable.top({name: values}, "agent.toml", (name,), {}).table(name, keys)


def test_the_broker_section_is_a_broker_address(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    broker = read_broker(
        section("broker", BROKER_KEYS, {"url": "mqtts://b.lan", "ca": "ca.pem"}), tmp_path
    )
    assert isinstance(broker, BrokerAddress) and isinstance(broker, BrokerConfig)
    assert (broker.host, broker.port, broker.tls, broker.ca) == (
        "b.lan",
        8883,
        True,
        tmp_path / "ca.pem",
    )
    assert "host" not in BROKER_KEYS and "url" in BROKER_KEYS


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://h/x", "broker.url: expected mqtt:// or mqtts://HOST[:PORT], got 'mqtt://h/x'"),
        ("mqtt://u:p@h", "broker.url: must not carry credentials"),
        ("mqtt://h:99999", "broker.url: expected mqtt:// or mqtts://HOST[:PORT]"),
    ],
)
def test_a_url_the_address_refuses_is_one_line(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_broker(section("broker", BROKER_KEYS, {"url": url}), tmp_path)
    assert str(info.value).startswith(f"agent.toml: {message}")


def test_serving_listens_on_loopback_only(tmp_path: Path) -> None:
    serving = read_serving(section("serving", SERVING_KEYS, {"listen": "[::1]:0"}), tmp_path)
    assert (serving.host, serving.port, serving.grpc_listen) == ("::1", 0, "")
    for values, key in (
        ({"listen": "0.0.0.0:80"}, "serving.listen"),
        ({"listen": "127.0.0.1:1", "grpc_listen": "127.0.0.1:1"}, "serving.grpc_listen"),
        ({"host": "x"}, "serving.host"),
    ):
        with pytest.raises(ConfigError, match=rf"^agent.toml: {key}: "):
            read_serving(section("serving", SERVING_KEYS, values), tmp_path)
