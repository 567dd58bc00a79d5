"""``edge-sdk fleet status`` against a real Mosquitto: real agents, a stopped one, a device that
publishes garbage, enrolled devices never seen, filters, and a fleet of 50 retained statuses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_sdk.core.wire.topics import Topics
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    retained_status,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker, free_port
from tests.edge_sdk.cli.test_fleet_publish_cmd import one_error_line
from tests.edge_sdk.fleet.test_inventory_fuzz import agent_status

Cli = Callable[..., tuple[int, str, str]]
TOPICS = Topics("edge", "default")


def status_json(cli: Cli, broker: Broker, *args: str | Path) -> dict[str, Any]:
    code, out, err = cli("fleet", "status", "--broker", broker.url, "--json", *args)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def by_device(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["device"]: d for d in doc["devices"]}


def reported_committed(broker: Broker, device: str) -> Callable[[], bool]:
    """The device's retained status (not only its local journal) says committed."""

    def check() -> bool:
        status = retained_status(broker, device)
        return status is not None and status["models"]["digits"]["state"] == "committed"

    return check


def raw_publish(broker: Broker, messages: dict[str, bytes]) -> None:
    """Retained QoS 1 messages, each acknowledged, from a plain paho client."""
    client = broker.client("operator" if broker.tls else None)
    infos = [client.publish(t, p, qos=1, retain=True) for t, p in messages.items()]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def test_real_agents_garbage_and_enrolled_devices(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    configs = {
        name: write_config(tmp_path / name, broker, keyring / "root.json", device=name)
        for name in ("dev-1", "dev-2")
    }
    raw_publish(broker, {TOPICS.status("junk-1"): b"\xff garbage"})
    records = tmp_path / "broker-dir" / "devices"
    records.mkdir(parents=True)
    (records / "new-1.json").write_text(
        json.dumps({"device": "new-1", "group": "dock", "profile": "rpi5"})
    )
    (records / "dev-1.json").write_text(json.dumps({"device": "dev-1", "group": "default"}))
    with agent_thread(configs["dev-1"]), agent_thread(configs["dev-2"]):
        for name, config in configs.items():
            operator.assign(1, device=name)
            wait_for(committed(config, 1))
            wait_for(reported_committed(broker, name), what=f"{name}'s committed status")
        doc = status_json(cli, broker, "--broker-dir", tmp_path / "broker-dir")
        devices = by_device(doc)
        assert set(devices) == {"dev-1", "dev-2", "junk-1", "new-1"}
        for name in configs:
            d = devices[name]
            assert d["online"] is True and d["seen"] and d["last_seen"], d
            assert d["group"] == "default" and d["profile"] == "x86-64"
            digits = d["models"]["digits"]
            assert digits["version"] == 1 and digits["state"] == "committed", digits
            assert digits["last_result"]["result"] == "committed"
            assert digits["inference"]["count"] == 0
        assert "not UTF-8" in devices["junk-1"]["problem"]
        assert devices["new-1"]["presence"] == "never seen" and devices["new-1"]["group"] == "dock"
        assert doc["summary"]["by_version"] == {"digits": {"1": 2}}
        assert doc["summary"]["never_seen"] == 1 and doc["summary"]["problems"] == 1

        code, out, err = cli(
            "fleet", "status", "--broker", broker.url, "--broker-dir", tmp_path / "broker-dir"
        )
        assert code == 0, err
        dev1 = next(line for line in out.splitlines() if line.startswith("dev-1"))
        assert "digits" in dev1 and "committed" in dev1 and "online" in dev1 and "ago" in dev1
        assert "not UTF-8" in out and "never seen" in out
        assert "4 devices: 2 online, 0 offline" in out

        # Filters narrow the same fleet.
        assert set(by_device(status_json(cli, broker, "--device", "dev-2"))) == {"dev-2"}
        assert set(by_device(status_json(cli, broker, "--state", "committed"))) == {
            "dev-1",
            "dev-2",
        }
        assert status_json(cli, broker, "--state", "failed")["devices"] == []
        assert status_json(cli, broker, "--model", "faces")["devices"] == []
    # Both agents stopped cleanly: each published its own offline presence on the way out.
    wait_for(lambda: status_json(cli, broker, "--online")["devices"] == [], what="offline")
    offline = by_device(status_json(cli, broker, "--offline"))
    assert offline["dev-1"]["online"] is False and offline["dev-2"]["online"] is False
    # What a device last reported stays readable while it is away.
    assert offline["dev-1"]["models"]["digits"]["version"] == 1


def test_one_stopped_agent_shows_offline(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    keep = write_config(tmp_path / "dev-1", broker, keyring / "root.json", device="dev-1")
    stop = write_config(tmp_path / "dev-2", broker, keyring / "root.json", device="dev-2")
    with agent_thread(keep):
        with agent_thread(stop):
            wait_for(lambda: len(status_json(cli, broker, "--online")["devices"]) == 2)
        wait_for(lambda: set(by_device(status_json(cli, broker, "--offline"))) == {"dev-2"})
        assert set(by_device(status_json(cli, broker, "--online"))) == {"dev-1"}
        summary = status_json(cli, broker)["summary"]
        assert (summary["online"], summary["offline"]) == (1, 1)


def test_status_over_mutual_tls(cli: Cli, tmp_path: Path, tls_broker: Broker) -> None:
    raw_publish(tls_broker, {TOPICS.status("cam-1"): json.dumps({"group": "lobby"}).encode()})
    cert, key = tls_broker.client_cert("operator")
    doc = status_json(
        cli,
        tls_broker,
        "--ca",
        tls_broker.ca_path,
        "--cert",
        cert,
        "--key",
        key,
        "--broker-dir",
        tmp_path / "nothing-here",
    )
    assert [(d["device"], d["group"]) for d in doc["devices"]] == [("cam-1", "lobby")]


def test_sync_returns_every_retained_status_of_a_50_device_fleet(cli: Cli, tmp_path: Path) -> None:
    # A broker whose per-client queue (QoS 1 and 2) is far smaller than the fleet: the status
    # subscription is QoS 0 and must not depend on that queue.
    with Broker(tmp_path / "small-queue", extra_config=["max_queued_messages 5"]) as broker:
        names = [f"cam-{i:02d}" for i in range(50)]
        messages = {}
        for i, name in enumerate(names):
            status = {
                "device": name,
                "group": "even" if i % 2 == 0 else "odd",
                "profile": "x86-64",
                "at": "2026-01-01T00:00:00Z",
                "models": {"digits": {"version": 1 + i % 3, "state": "committed"}},
            }
            messages[TOPICS.status(name)] = json.dumps(status).encode()
            messages[TOPICS.presence(name)] = json.dumps({"online": i % 5 != 0}).encode()
        raw_publish(broker, messages)
        doc = status_json(cli, broker, "--broker-dir", tmp_path / "none")
        assert [d["device"] for d in doc["devices"]] == names
        assert doc["summary"]["by_version"] == {"digits": {"1": 17, "2": 17, "3": 16}}
        assert (doc["summary"]["online"], doc["summary"]["offline"]) == (40, 10)
        assert len(status_json(cli, broker, "--group", "odd")["devices"]) == 25


def test_one_hostile_device_never_hides_the_rest_of_the_fleet(
    cli: Cli, tmp_path: Path, broker: Broker
) -> None:
    """Retained garbage of every kind beside good, agent-shaped statuses: the command lists
    every good device, shows each bad one as a problem, and answers fast. (A status of 100 KB
    of ``[`` used to raise RecursionError on paho's network thread: sync() then waited out
    its 30 s and the command listed nothing.)"""
    messages = {}
    good = ("cam-1", "cam-2", "cam-3")
    for i, name in enumerate(good):
        doc = agent_status(group="lab", version=1 + i)
        messages[TOPICS.status(name)] = json.dumps(doc).encode()
        messages[TOPICS.presence(name)] = b'{"online": true}'
    hostile = {
        "bad-deep": b"[" * 100_000,
        "bad-binary": bytes(range(256)) * 4,
        "bad-bigint": b'{"models": {"digits": {"version": ' + b"9" * 5000 + b"}}}",
        "bad-nan": b'{"group": "lab", "at": NaN}',
        "bad-huge": b'{"group": "' + b"a" * (300 * 1024) + b'"}',
    }
    for name, payload in hostile.items():
        messages[TOPICS.status(name)] = payload
    messages[TOPICS.presence("bad-deep")] = b"{" * 50_000
    # Readable JSON, but every field the wrong type or out of range, with terminal escapes.
    wrong = {
        "group": ["lab"],
        "profile": "\x1b[2J[red]x86[/red]",
        "at": 12,
        "assignment_error": "\x1b]0;owned\x07",
        "models": {"digits": {"version": -4, "state": {"x": 1}, "serial": 2**70}, "m": 7},
    }
    messages[TOPICS.status("bad-types")] = json.dumps(wrong).encode()
    raw_publish(broker, messages)

    started = time.monotonic()
    doc = status_json(cli, broker, "--broker-dir", tmp_path / "none")
    assert time.monotonic() - started < 10
    devices = by_device(doc)
    assert set(devices) == {*good, *hostile, "bad-types"}
    for i, name in enumerate(good):
        d = devices[name]
        assert d["problem"] == "" and d["online"] is True and d["group"] == "lab"
        assert d["models"]["digits"]["version"] == 1 + i
        assert d["models"]["digits"]["state"] == "committed"
    assert "nests deeper" in devices["bad-deep"]["problem"]
    assert devices["bad-deep"]["online"] is None
    assert "not UTF-8" in devices["bad-binary"]["problem"]
    assert "not JSON" in devices["bad-bigint"]["problem"]
    assert "not JSON" in devices["bad-nan"]["problem"]
    assert "byte limit" in devices["bad-huge"]["problem"]
    typed = devices["bad-types"]
    assert typed["problem"] == "" and typed["group"] == ""
    assert "\x1b" not in typed["profile"] and "\x1b" not in typed["assignment_error"]
    assert typed["models"] == {
        "digits": {
            "version": None,
            "version_label": None,
            "state": "unknown",
            "target_version": None,
            "target_version_label": None,
            "serial": 0,
            "reason": "",
            "last_result": None,
            "inference": None,
        }
    }
    assert doc["summary"]["problems"] == 5 and doc["summary"]["online"] == 3

    code, out, err = cli("fleet", "status", "--broker", broker.url, "--broker-dir", tmp_path)
    assert code == 0, err
    assert "\x1b" not in out and "9 devices: 3 online" in out
    for name in good:
        assert any(line.startswith(name) and "committed" in line for line in out.splitlines())
    assert "bad-deep: status nests deeper than" in out


def test_a_parser_that_raises_costs_one_device_not_the_command(
    cli: Cli, tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth at paho's callback: an exception there ended the network thread, and
    sync() waited out its 30 s for a SUBACK that thread would never read."""
    from edge_sdk.fleet import inventory

    real = inventory.parse_status

    def flaky(device: str, payload: bytes | bytearray) -> inventory.DeviceView:
        if device == "cam-2":
            raise RecursionError("a bug in a parser")
        return real(device, payload)

    monkeypatch.setattr(inventory, "parse_status", flaky)
    raw_publish(
        broker,
        {
            TOPICS.status(n): json.dumps(agent_status()).encode()
            for n in ("cam-1", "cam-2", "cam-3")
        },
    )
    started = time.monotonic()
    devices = by_device(status_json(cli, broker, "--broker-dir", tmp_path / "none"))
    assert time.monotonic() - started < 10
    assert devices["cam-2"]["problem"] == "status could not be read (RecursionError)"
    assert devices["cam-1"]["models"]["digits"]["version"] == 3
    assert devices["cam-3"]["models"]["digits"]["version"] == 3


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--broker", "http://x"), "is not mqtt://"),
        (("--broker", "mqtts://h:8883"), "no --ca"),
        (("--ca", "/nonexistent/ca.pem", "--broker", "mqtts://h:8883"), "does not exist"),
        (("--state", "broken"), "--state 'broken' is not one of"),
        (("--device", "cam/1"), "must be 1-64"),
        (("--group", "#"), "must be 1-64"),
        (("--model", "a b"), "model name"),
    ],
)
def test_bad_input_is_one_line_before_connecting(
    cli: Cli, args: tuple[str, ...], phrase: str
) -> None:
    # Nothing listens on this port: a check made too late would say "cannot reach the broker".
    fallback = () if "--broker" in args else ("--broker", f"mqtt://127.0.0.1:{free_port()}")
    code, out, err = cli("fleet", "status", *args, *fallback)
    assert code == 2 and out == ""
    assert phrase in one_error_line(err)


def test_a_ca_file_that_is_not_a_certificate_is_one_line(cli: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    code, _, err = cli(
        "fleet", "status", "--broker", f"mqtts://127.0.0.1:{free_port()}", "--ca", junk
    )
    assert code == 2
    assert "cannot load the TLS files" in one_error_line(err)
