"""Who can take over whose MQTT session on the broker ``broker init`` configures.

A client id is a session: Mosquitto closes a connected client when another CONNECT arrives
with its id. On the devices' listener the broker replaces each client id with the
certificate's CN (``use_username_as_clientid``), so one device's certificate cannot knock
another device off; the operator's commands keep ids of their own on a listener that admits
only the operator CA's certificate (docs/protocol.md §2).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_sdk.core.bundle import write_bundle
from testing.agents import make_bundle
from testing.fleet_broker import FleetBroker
from testing.mosquitto import BrokerRefused
from tests.edge_sdk.broker.test_broker_acl import ACCEPTED, _publish

ROOT = "edge/default"
# Long enough for a takeover (and paho's automatic reconnect) to have shown up.
SETTLE_S = 1.5


def _watch_disconnects(client: mqtt.Client) -> list[Any]:
    seen: list[Any] = []
    client.on_disconnect = lambda _c, _u, _f, reason, _p: seen.append(reason)
    return seen


@pytest.fixture()
def fleet(fleet_broker: FleetBroker) -> FleetBroker:
    for device in ("dev-a", "dev-b"):
        fleet_broker.enroll(device)
    return fleet_broker


def test_a_device_sending_another_devices_client_id_does_not_disconnect_it(
    fleet: FleetBroker,
) -> None:
    b = fleet.client("dev-b", client_id="dev-b")
    dropped = _watch_disconnects(b)
    # A's certificate with B's client id, twice: the broker makes it session "dev-a".
    a = fleet.client("dev-a", client_id="dev-b")
    again = fleet.client("dev-a", client_id="dev-b")
    time.sleep(SETTLE_S)
    assert dropped == [] and b.is_connected()
    assert _publish(b, f"{ROOT}/devices/dev-b/status", b"{}") in ACCEPTED
    # A is still only A: its own subtree is writable, B's is not (the ACL's %u is the CN).
    assert _publish(again, f"{ROOT}/devices/dev-a/status", b"{}") in ACCEPTED
    assert _publish(again, f"{ROOT}/devices/dev-b/status", b"{}") not in ACCEPTED
    # The second "dev-a" session took over the first: a device's own reconnect still works.
    assert not a.is_connected()


def test_a_device_certificate_cannot_reach_the_operators_listener(fleet: FleetBroker) -> None:
    """There client ids are the client's own choice; a device there could take over an
    operator command's session (or, with a device's id, a device's)."""
    with pytest.raises(BrokerRefused):
        fleet.client("dev-a", port=fleet.operator_port, client_id="dev-b")
    with pytest.raises(BrokerRefused):
        fleet.client("dev-a", port=fleet.operator_port, client_id="edge-sdk-status-1-abcd")
    # The operator's certificate is for its own listener only.
    with pytest.raises(BrokerRefused):
        fleet.client("operator", port=fleet.port)


def test_operator_commands_at_once_keep_their_own_sessions(
    fleet: FleetBroker, cli: Any, tmp_path: Path
) -> None:
    """A running rollout holds two operator sessions (its watch and its publisher); `fleet
    status` beside it must not knock either off, nor they each other. (With one listener
    replacing client ids, all of them would be session "operator".)"""
    watch = fleet.client("operator", client_id="edge-sdk-rollout-1-aaaa")
    link = fleet.client("operator", client_id="edge-sdk-operator-1-bbbb")
    drops = [_watch_disconnects(c) for c in (watch, link)]
    device = fleet.client("dev-a", client_id="dev-a")
    assert _publish(device, f"{ROOT}/devices/dev-a/status", b'{"group": "g"}', True) in ACCEPTED
    cert, key = fleet.operator_cert
    for _ in range(2):
        code, out, err = cli(
            "fleet", "status", "--json", "--broker", fleet.operator_url, "--ca", fleet.ca_path,
            "--client-cert", cert, "--client-key", key, "--broker-dir", tmp_path / "none",
        )  # fmt: skip
        assert code == 0, err
        assert '"device": "dev-a"' in out
    time.sleep(SETTLE_S)
    assert drops == [[], []]
    assert watch.is_connected() and link.is_connected()
    assert _publish(link, f"{ROOT}/desired/devices/dev-a/digits", b"", True) in ACCEPTED


def test_fleet_publish_beside_another_operator_command_disconnects_nothing(
    fleet: FleetBroker, cli: Any, tmp_path: Path, keyring: Path
) -> None:
    """`fleet publish` and `fleet assign` connected as "edge-sdk-operator", each run taking
    over the session of any other running with that id."""
    other = fleet.client("operator", client_id="edge-sdk-operator")
    drops = _watch_disconnects(other)
    cert, key = fleet.operator_cert
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    code, _out, err = cli(
        "fleet", "publish", bundle, "--repo", tmp_path / "repo", "--keys",
        keyring, "--broker", fleet.operator_url, "--ca", fleet.ca_path, "--client-cert", cert,
        "--client-key", key,
    )  # fmt: skip
    assert code == 0, err
    time.sleep(SETTLE_S)
    assert drops == [] and other.is_connected()
