"""The generated broker config enforced by a real Mosquitto: mutual TLS and the fleet ACL.

Each test runs Mosquitto on what ``broker init`` wrote and connects with certificates that
``fleet enroll`` issued, so these are the guarantees a real fleet gets (docs/protocol.md §2).
"""

from __future__ import annotations

import contextlib
import queue
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_sdk.broker import pki
from testing.fleet_broker import FleetBroker
from testing.mosquitto import BrokerRefused

ROOT = "edge/default"
WAIT_S = 5.0
# How long to wait for something that must NOT arrive, once a message that had to take the
# same path already has.
QUIET_S = 0.5
NOT_AUTHORIZED = 0x87
# PUBACK reason codes below 0x80 are success; 0x10 is "no matching subscribers".
ACCEPTED = {0x00, 0x10}


@pytest.fixture()
def fleet(fleet_broker: FleetBroker) -> FleetBroker:
    for device in ("dev-1", "dev-2"):
        fleet_broker.enroll(device)
    return fleet_broker


def _publish(client: mqtt.Client, topic: str, payload: bytes, retain: bool = False) -> int:
    """QoS 1 publish; the PUBACK reason code."""
    acked: queue.Queue[tuple[int, int]] = queue.Queue()

    def on_publish(_c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        acked.put((mid, reason.value))

    client.on_publish = on_publish
    info = client.publish(topic, payload, qos=1, retain=retain)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        mid, code = acked.get(timeout=WAIT_S)
        if mid == info.mid:
            return code
    raise AssertionError(f"no PUBACK for {topic}")


def _inbox(client: mqtt.Client, topic: str) -> queue.Queue[mqtt.MQTTMessage]:
    """Subscribe at QoS 1, wait for the SUBACK, and collect what arrives."""
    inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    acked: queue.Queue[bool] = queue.Queue()
    client.on_message = lambda _c, _u, message: inbox.put(message)
    client.on_subscribe = lambda _c, _u, _mid, _codes, _p: acked.put(True)
    client.subscribe(topic, qos=1)
    acked.get(timeout=WAIT_S)
    return inbox


def _topics(inbox: queue.Queue[mqtt.MQTTMessage], wait: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            got.append(inbox.get(timeout=0.05).topic)
    return got


def test_device_cannot_publish_another_devices_status(fleet: FleetBroker) -> None:
    watcher = _inbox(fleet.client("operator"), f"{ROOT}/devices/#")
    device = fleet.client("dev-1")
    assert _publish(device, f"{ROOT}/devices/dev-2/status", b"forged") == NOT_AUTHORIZED
    assert _publish(device, f"{ROOT}/devices/dev-1/status", b"mine") in ACCEPTED
    assert _topics(watcher, QUIET_S) == [f"{ROOT}/devices/dev-1/status"]


def test_device_publishes_benchmark_answers_only_to_its_own_subtree(fleet: FleetBroker) -> None:
    watcher = _inbox(fleet.client("operator"), f"{ROOT}/devices/#")
    device = fleet.client("dev-1")
    assert _publish(device, f"{ROOT}/devices/dev-2/bench", b"forged", True) == NOT_AUTHORIZED
    assert _publish(device, f"{ROOT}/devices/dev-1/bench", b"{}", True) in ACCEPTED
    assert _topics(watcher, QUIET_S) == [f"{ROOT}/devices/dev-1/bench"]


@pytest.mark.parametrize(
    "topic",
    [
        "desired/devices/dev-1/digits",  # not even its own desired state
        "desired/devices/dev-1/jobs/bench",  # nor a benchmark job for itself
        "desired/groups/default/digits",
        "repo/metadata/timestamp.json",
        "repo/chunks/" + "0" * 64,
    ],
)
def test_device_cannot_write_desired_state_or_the_repository(
    fleet: FleetBroker, topic: str
) -> None:
    watcher = _inbox(fleet.client("operator"), f"{ROOT}/#")
    device = fleet.client("dev-1")
    assert _publish(device, f"{ROOT}/{topic}", b"x", retain=True) == NOT_AUTHORIZED
    assert _publish(device, f"{ROOT}/devices/dev-1/events", b"control") in ACCEPTED
    assert _topics(watcher, QUIET_S) == [f"{ROOT}/devices/dev-1/events"]


def test_device_reads_its_desired_state_groups_and_repo_but_not_others(
    fleet: FleetBroker,
) -> None:
    operator = fleet.client("operator")
    readable = [
        "desired/devices/dev-1/digits",
        "desired/groups/default/digits",
        "repo/metadata/1.root.json",
        "repo/chunks/" + "a" * 64,
    ]
    hidden = ["desired/devices/dev-2/digits", "devices/dev-2/status"]
    for topic in readable + hidden[:1]:
        assert _publish(operator, f"{ROOT}/{topic}", b"{}", retain=True) in ACCEPTED
    assert _publish(fleet.client("dev-2"), f"{ROOT}/devices/dev-2/status", b"{}", True) in ACCEPTED

    # Mosquitto grants the subscription and filters each message: a forbidden retained read
    # looks like an empty topic.
    inbox = _inbox(fleet.client("dev-1"), f"{ROOT}/#")
    got = _topics(inbox, 1.0)
    assert sorted(got) == sorted(f"{ROOT}/{t}" for t in readable)


def test_operator_writes_desired_state_and_repository(fleet: FleetBroker) -> None:
    operator = fleet.client("operator")
    for topic in ("desired/devices/dev-1/digits", "desired/groups/g/digits", "repo/metadata/x"):
        assert _publish(operator, f"{ROOT}/{topic}", b"{}", retain=True) in ACCEPTED


def test_client_without_a_certificate_is_refused(fleet: FleetBroker) -> None:
    with pytest.raises(BrokerRefused):
        fleet.client(None)


def test_client_with_a_certificate_from_another_ca_is_refused(
    fleet: FleetBroker, tmp_path: Path
) -> None:
    # Same CN as a real device and as the operator: only the CA makes the difference.
    other = pki.create_ca("someone else's CA")
    for name in ("dev-1", "operator"):
        paths = (tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        pki.write_issued(pki.issue_client(other, name), *paths)
        with pytest.raises(BrokerRefused):
            fleet.client(name, cert=paths)


def test_retained_messages_survive_a_restart(fleet: FleetBroker) -> None:
    """Persistence from the generated config: the repository outlives the broker process."""
    topic = f"{ROOT}/repo/metadata/1.root.json"
    assert _publish(fleet.client("operator"), topic, b"root", retain=True) in ACCEPTED
    fleet.close()
    fleet.start()
    assert _topics(_inbox(fleet.client("dev-1"), topic), 1.0) == [topic]
