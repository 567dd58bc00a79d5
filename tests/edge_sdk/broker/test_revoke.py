"""``edge-sdk fleet revoke``: a revoked device certificate no longer opens the broker that
``broker init`` configured (its crlfile), after the broker's restart; nothing else changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge_sdk.broker import pki
from edge_sdk.broker.revoke import revoke
from testing.fleet_broker import FleetBroker
from testing.mosquitto import BrokerRefused

Cli = Callable[..., tuple[int, str, str]]


def test_a_revoked_device_is_refused_after_a_restart_and_the_others_are_not(
    fleet_broker: FleetBroker, cli: Cli
) -> None:
    fleet_broker.enroll("cam-a")
    fleet_broker.enroll("cam-b")
    fleet_broker.client("cam-a")
    fleet_broker.client("cam-b")

    code, out, err = cli("fleet", "revoke", "cam-a", "--broker-dir", fleet_broker.directory)
    assert code == 0, err
    assert "revoked cam-a" in out and "Restart the broker" in out
    crl = (fleet_broker.directory / "crl.pem").read_bytes()
    serial = int(fleet_broker.enrolled["cam-a"].serial, 16)
    assert pki.revoked_serials(crl) == {serial}

    fleet_broker.restart()
    with pytest.raises(BrokerRefused):
        fleet_broker.client("cam-a")
    fleet_broker.client("cam-b")
    fleet_broker.client("operator")

    # Idempotent: the same certificate again changes nothing.
    again = revoke(fleet_broker.directory, "cam-a")
    assert again.already and again.revoked_total == 1
    assert (fleet_broker.directory / "crl.pem").read_bytes() == crl

    # Re-enrolling issues a certificate with a new serial, which the CRL does not name.
    fleet_broker.enroll("cam-a", force=True)
    fleet_broker.client("cam-a")


@pytest.mark.parametrize(
    "device, message",
    [
        ("cam-x", "cam-x is not enrolled in"),
        ("a/b", "device id: 'a/b' must be"),
        ("operator", "operator"),
    ],
)
def test_revoke_bad_input_is_one_line(
    fleet_broker: FleetBroker, cli: Cli, device: str, message: str
) -> None:
    fleet_broker.enroll("cam-a")
    before = (fleet_broker.directory / "crl.pem").read_bytes()
    code, _, err = cli("fleet", "revoke", device, "--broker-dir", fleet_broker.directory)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and message in err
    assert (fleet_broker.directory / "crl.pem").read_bytes() == before


def test_revoke_outside_a_broker_directory_says_where_to_look(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("fleet", "revoke", "cam-a", "--broker-dir", tmp_path)
    assert code == 2 and "broker init" in err and len(err.splitlines()) == 1
