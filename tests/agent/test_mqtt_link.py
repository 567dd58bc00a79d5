"""Retained reads on a real broker: answered when the message arrives, kept across a loss
before the UNSUBACK, and timed out on silence rather than on a fixed budget."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from agent.config import BrokerConfig
from agent.mqtt_link import MqttLink, Will, _Read
from edge_sdk.errors import TransferError
from tests.agent.support import wait_for
from tests.mosquitto import Broker


@pytest.fixture()
def link(broker: Broker) -> Any:
    config = BrokerConfig(
        broker.host, broker.port, False, None, None, None, reconnect_min_s=0.1, reconnect_max_s=0.2
    )
    link = MqttLink(
        config,
        "link-test",
        will=Will("t/presence", b"off"),
        online=Will("t/presence", b"on"),
        max_packet_bytes=64 * 1024,
    )
    link.start()
    wait_for(link.connected.is_set, what="connected")
    yield link
    link.stop()


def publish(broker: Broker, topic: str, payload: bytes) -> None:
    client = broker.client(None)
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_reads_answer_present_absent_and_oversize(broker: Broker, link: MqttLink) -> None:
    publish(broker, "t/small", b"hello")
    publish(broker, "t/big", b"x" * (128 * 1024))  # over this link's maximum packet size
    reads = link.start_reads(["t/small", "t/none", "t/big"])
    assert [link.finish_read(r, 5.0) for r in reads] == [b"hello", None, None]


def test_an_answer_that_arrived_survives_a_loss_before_the_unsuback(link: MqttLink) -> None:
    """Before: the read failed with the loss although its message was there."""
    (read,) = link.start_reads(["t/answer"])
    link._on_message(None, None, SimpleNamespace(topic="t/answer", payload=b"data", retain=True))  # type: ignore[arg-type]
    link._lost("disconnected (test)")
    assert link.answered(read)
    assert link.finish_read(read, 0.5) == b"data"


def test_a_read_times_out_on_silence_not_while_bytes_arrive(link: MqttLink) -> None:
    read = _Read("t/slow")  # a read whose answer never comes
    # Bytes keep arriving (a slow link mid-packet): no timeout although 1.5 s > 0.6 s pass.
    started = time.monotonic()
    stop = started + 1.5

    def trickle() -> None:
        while time.monotonic() < stop:
            link._client.last_rx = time.monotonic()
            time.sleep(0.1)

    feeder = threading.Thread(target=trickle)
    feeder.start()
    with pytest.raises(TransferError, match=r"nothing received for 0\.6 s"):
        link.finish_read(read, 0.6)
    feeder.join()
    assert time.monotonic() - started >= 1.5 + 0.5  # only the silence after the trickle counted
