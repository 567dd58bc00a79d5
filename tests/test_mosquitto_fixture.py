"""The Mosquitto fixtures themselves: if these fail, every MQTT test after them means nothing."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_sdk.broker import pki
from testing.mosquitto import Broker, BrokerRefused

WAIT_S = 5.0
# How long to wait for a message that must NOT arrive, after a control message that had to
# take the same path already has.
QUIET_S = 0.5


def _inbox(client: mqtt.Client) -> queue.Queue[mqtt.MQTTMessage]:
    inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        inbox.put(message)

    client.on_message = on_message
    return inbox


def _subscribe(client: mqtt.Client, topic: str) -> list[int]:
    """Subscribe at QoS 1 and wait for the SUBACK; returns its reason code values."""
    acked: queue.Queue[list[int]] = queue.Queue()

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
        acked.put([code.value for code in codes])

    client.on_subscribe = on_subscribe
    result, _mid = client.subscribe(topic, qos=1)
    assert result == mqtt.MQTT_ERR_SUCCESS
    return acked.get(timeout=WAIT_S)


def _publish(client: mqtt.Client, topic: str, payload: bytes, *, retain: bool = False) -> None:
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(timeout=WAIT_S)
    assert info.is_published()


def test_plain_round_trip(broker: Broker) -> None:
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    assert broker.port != 1883
    subscriber = broker.client()
    inbox = _inbox(subscriber)
    assert _subscribe(subscriber, "edge/test/#") == [1]

    _publish(broker.client(), "edge/test/hello", b"hi")

    message = inbox.get(timeout=WAIT_S)
    assert (message.topic, message.payload) == ("edge/test/hello", b"hi")


def test_retained_message_survives_restart(broker: Broker) -> None:
    _publish(broker.client(), "edge/devices/d1/desired", b"v2", retain=True)
    port = broker.port

    broker.restart()

    assert broker.port == port
    inbox = _inbox(fresh := broker.client())
    _subscribe(fresh, "edge/devices/d1/desired")
    message = inbox.get(timeout=WAIT_S)
    assert (message.payload, message.retain) == (b"v2", True)


def test_tls_client_with_certificate_from_the_ca_connects(tls_broker: Broker) -> None:
    assert tls_broker.url == f"mqtts://127.0.0.1:{tls_broker.port}"
    cert_path, _key_path = tls_broker.client_cert("device-1")
    assert pki.common_name(cert_path.read_bytes()) == "device-1"
    assert tls_broker.client_cert("device-1") == (cert_path, _key_path)

    client = tls_broker.client("device-1")
    inbox = _inbox(client)
    _subscribe(client, "edge/devices/device-1/#")
    _publish(client, "edge/devices/device-1/state", b"ok")
    assert inbox.get(timeout=WAIT_S).payload == b"ok"


def test_tls_client_without_certificate_is_refused(tls_broker: Broker) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerRefused):
        tls_broker.client()
    # Refused by the handshake, not left waiting for the CONNACK timeout.
    assert time.monotonic() - started < 5


def test_tls_client_with_certificate_from_another_ca_is_refused(
    tls_broker: Broker, tmp_path: Path
) -> None:
    stranger = pki.issue_client(pki.create_ca("some other CA"), "device-1")
    paths = (tmp_path / "stranger.pem", tmp_path / "stranger.key")
    pki.write_issued(stranger, *paths)

    with pytest.raises(BrokerRefused):
        tls_broker.client("device-1", cert=paths)


def test_acl_confines_a_device_to_its_own_subtree(
    broker_factory: Callable[..., Broker],
) -> None:
    tls_broker = broker_factory(tls=True, acl="pattern readwrite edge/devices/%u/#\n")
    owner = tls_broker.client("device-1")
    other = tls_broker.client("device-2")
    owner_inbox = _inbox(owner)
    other_inbox = _inbox(other)
    assert _subscribe(owner, "edge/devices/device-1/#") == [1]
    # Mosquitto 2.0 grants a subscription the ACL forbids (SUBACK QoS 1, not 0x87 "not
    # authorized") and enforces read access per message instead: so the proof is that nothing
    # arrives, not the SUBACK.
    _subscribe(other, "edge/devices/device-1/#")

    _publish(owner, "edge/devices/device-1/state", b"mine")

    assert owner_inbox.get(timeout=WAIT_S).payload == b"mine"
    time.sleep(QUIET_S)
    assert other_inbox.empty()


def test_acl_refuses_a_publish_into_another_devices_subtree(
    broker_factory: Callable[..., Broker],
) -> None:
    tls_broker = broker_factory(tls=True, acl="pattern readwrite edge/devices/%u/#\n")
    owner_inbox = _inbox(owner := tls_broker.client("device-1"))
    _subscribe(owner, "edge/devices/device-1/#")
    other = tls_broker.client("device-2")
    acked: queue.Queue[int] = queue.Queue()

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        acked.put(int(reason.value))

    other.on_publish = on_publish
    other.publish("edge/devices/device-1/state", b"forged", qos=1)

    # MQTT 5 lets the broker say so in the PUBACK: 0x87, not authorized.
    assert acked.get(timeout=WAIT_S) == 0x87
    time.sleep(QUIET_S)
    assert owner_inbox.empty()


def test_broker_factory_gives_each_broker_its_own_port(
    broker_factory: Callable[..., Broker],
) -> None:
    first, second = broker_factory(), broker_factory()
    assert first.port != second.port
    assert first.running and second.running
