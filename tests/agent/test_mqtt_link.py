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
from testing.agents import wait_for
from testing.mosquitto import Broker


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
    # The read as start_reads leaves it before any answer: registered, its SUBACK not yet in.
    # (A real SUBSCRIBE would race the injected message: on a loaded host the broker's
    # "nothing retained" SUBACK and UNSUBACK could finish the read first.)
    read = _Read("t/answer")
    with link._lock:
        link._reads[read.topic] = read
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


def test_reads_cut_by_a_lost_connection_are_unsubscribed_on_the_next(broker: Broker) -> None:
    """The session is persistent: a read's subscription that a loss left behind (cut before
    its SUBACK, so before its UNSUBSCRIBE) would deliver every later message on that topic for
    a week. It is dropped when the link is back."""
    from tests.agent.throttle import ThrottledProxy

    publish(broker, "t/cut", b"y" * 1000)
    with ThrottledProxy(broker.port, rate=1_000_000) as proxy:
        config = BrokerConfig("127.0.0.1", proxy.port, False, None, None, None, reconnect_min_s=0.1)
        link = MqttLink(
            config,
            "link-cut",
            will=Will("t/presence", b"off"),
            online=Will("t/presence", b"on"),
            max_packet_bytes=64 * 1024,
        )
        link.start()
        try:
            wait_for(link.connected.is_set, what="connected")
            proxy.hold_down.set()  # the SUBACK will not reach the link
            (read,) = link.start_reads(["t/cut"])
            time.sleep(0.3)  # the SUBSCRIBE is at the broker
            proxy.cut()
            proxy.hold_down.clear()
            with pytest.raises(TransferError):
                link.finish_read(read, 5.0)
            wait_for(lambda: link.connections >= 2 and link.connected.is_set())
            got: list[str] = []
            handler = link._client.on_message
            link._client.on_message = lambda c, u, m: (got.append(m.topic), handler(c, u, m))
            time.sleep(0.5)  # the UNSUBSCRIBE sent on connect is through
            publish(broker, "t/cut", b"later")
            time.sleep(1.0)
            assert "t/cut" not in got
        finally:
            link.stop()
