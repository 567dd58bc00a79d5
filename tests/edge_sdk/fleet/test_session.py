"""The operator's MQTT session (edge_sdk.fleet.session): what a broker that is away means to
fleet publish, assign, status and rollout. Sessions against a real broker are exercised by
every fleet test (test_fleet_publish.py, test_rollout_fleet.py, ...)."""

from __future__ import annotations

import socket

import pytest

from edge_sdk.errors import BrokerUnavailableError, UpdateError, retry_later
from edge_sdk.fleet.session import BrokerAddress, OperatorLink


def test_a_broker_that_is_down_is_retry_later_not_an_update_error() -> None:
    """The operator's transport error (exit 8, retry later), not the agent's update error."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        pytest.raises(BrokerUnavailableError) as caught,
        OperatorLink(BrokerAddress.parse(f"mqtt://127.0.0.1:{port}"), "op-test", timeout=5),
    ):
        pass
    assert retry_later(caught.value) and not isinstance(caught.value, UpdateError)
    assert caught.value.exit_code == 8 and "cannot reach the broker" in str(caught.value)
