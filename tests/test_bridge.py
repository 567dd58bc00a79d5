"""The device and operator tools, unchanged, across two bridged Mosquitto brokers (a stand-in for
a clustered broker; docs/topologies.md): devices on an *edge* broker, the operator on the *core*
broker ``broker init`` made, joined by Mosquitto's own bridge over mutual TLS
(``tests.bridge_broker``). The repository and desired state cross the bridge as retained
messages, device reports come back the other way, and the ACL holds on both brokers."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from edge_sdk.fleet.publish import assign
from testing.agents import agent_thread, committed, make_bundle, wait_for
from testing.fleet_broker import FAST_BROKER_TOML, FAST_EXTRA_TOML, FleetBroker
from tests.bridge_broker import BRIDGE_CN, EdgeBroker
from tests.edge_sdk.fleet.test_rollout_fleet import Fleet, operator_for

Cli = Callable[..., tuple[int, str, str]]
DEVICES = ("cam-0", "cam-1", "cam-2")
ROOT = "edge/default"
NOT_AUTHORIZED = 0x87


@pytest.fixture()
def edge(tmp_path: Path, fleet_broker: FleetBroker) -> Iterator[EdgeBroker]:
    for device in DEVICES:
        fleet_broker.enroll(
            device, group="lobby", broker_toml=FAST_BROKER_TOML, extra_toml=FAST_EXTRA_TOML
        )
    with EdgeBroker(tmp_path / "edge", fleet_broker) as started:
        yield started


def _retained(client: object, topic: str, timeout: float = 5.0) -> bytes | None:
    inbox: queue.Queue[bytes] = queue.Queue()
    client.on_message = lambda _c, _u, m: inbox.put(bytes(m.payload))  # type: ignore[attr-defined]
    client.subscribe(topic, qos=1)  # type: ignore[attr-defined]
    try:
        return inbox.get(timeout=timeout)
    except queue.Empty:
        return None


def test_a_rollout_runs_over_the_bridge(
    cli: Cli, fleet_broker: FleetBroker, edge: EdgeBroker, keyring: Path, tmp_path: Path
) -> None:
    operator = operator_for(fleet_broker, keyring, tmp_path / "repo")
    operator.publish(make_bundle(keyring, 1))  # on the core
    configs = {d: edge.device_config(fleet_broker.enrolled[d].config) for d in DEVICES}
    fleet = Fleet(fleet_broker, operator, configs)
    with ExitStack() as stack:
        for config in configs.values():
            stack.enter_context(agent_thread(config))
        with operator.link() as link:
            assign(
                keyring,
                operator.repo_dir,
                link,
                operator.topics,
                model="digits",
                version=1,
                scope="groups/lobby",
            )
        for device, config in configs.items():
            wait_for(committed(config, 1), 60, f"{device} on v1 through the edge broker")

        operator.publish(make_bundle(keyring, 2))
        code, out, err = cli(
            "fleet",
            "rollout",
            "digits",
            "2",
            "--group",
            "lobby",
            "--waves",
            "1,100%",
            "--probation",
            "0.2",
            "--wave-timeout",
            "60",
            *fleet.options(),  # the core's operator listener
            "--json",
        )
        assert code == 0, err
        result = json.loads(out)
        assert result["status"] == "completed", result
        assert {d: r["verdict"] for d, r in result["devices"].items()} == dict.fromkeys(
            DEVICES, "passed"
        )
        for device, config in configs.items():
            wait_for(committed(config, 2), 30, f"{device} on v2")

        # `fleet status` on the core sees every device, which only ever dialled the edge.
        code, out, err = cli("fleet", "status", *fleet.options()[:8], "--json")
        assert code == 0, err
        status = json.loads(out)
        devices = status["devices"] if isinstance(status, dict) else status
        seen = {d["device"]: d for d in devices}
        assert set(DEVICES) <= set(seen)

    core_log = fleet_broker.log_path.read_text(errors="replace")
    edge_log = edge.log_tail(100_000)
    assert BRIDGE_CN in core_log
    for device in DEVICES:
        assert f"as {device}" in edge_log and f"as {device}" not in core_log


def test_the_acl_holds_on_both_brokers(fleet_broker: FleetBroker, edge: EdgeBroker) -> None:
    """A device on the edge cannot write desired state or another device's subtree, so nothing
    it sends can reach the core through the bridge but its own reports."""
    device = edge.client("cam-0")
    operator = fleet_broker.client("operator")
    acks: queue.Queue[tuple[int, int]] = queue.Queue()
    device.on_publish = lambda _c, _u, mid, reason, _p: acks.put((mid, reason.value))

    def publish(topic: str) -> int:
        info = device.publish(topic, b"{}", qos=1, retain=True)
        mid, code = acks.get(timeout=5)
        assert mid == info.mid
        return code

    assert publish(f"{ROOT}/desired/groups/lobby/digits") == NOT_AUTHORIZED
    assert publish(f"{ROOT}/devices/cam-1/status") == NOT_AUTHORIZED
    assert publish(f"{ROOT}/repo/metadata/timestamp.json") == NOT_AUTHORIZED
    assert publish(f"{ROOT}/devices/cam-0/status") in (0x00, 0x10)
    # Its own report crosses to the core, retained; the refused ones never do.
    assert _retained(operator, f"{ROOT}/devices/cam-0/status") == b"{}"
    time.sleep(0.3)
    assert _retained(operator, f"{ROOT}/devices/cam-1/status", timeout=0.5) is None
    assert _retained(operator, f"{ROOT}/desired/groups/lobby/digits", timeout=0.5) is None
