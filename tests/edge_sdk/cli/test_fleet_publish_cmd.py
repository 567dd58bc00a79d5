"""``edge-sdk fleet publish|assign`` end to end: through ``edge_sdk.cli.run`` to a real
Mosquitto, and on to an agent that installs what the commands published."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_sdk.core.bundle import write_bundle
from testing.agents import agent_thread, committed, make_bundle, wait_for, write_config
from testing.mosquitto import Broker, free_port

Cli = Callable[..., tuple[int, str, str]]


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_publish_then_assign_reaches_an_agent(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    common = ("--repo", tmp_path / "repo", "--keys", keyring, "--broker", broker.url)
    code, out, err = cli("fleet", "publish", bundle, *common, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first["name"] == "digits" and first["version"] == 1 and first["chunks"] > 0
    # Idempotent: publishing again sends the same release and changes nothing.
    code, out, err = cli("fleet", "publish", bundle, *common, "--json")
    assert code == 0, err
    assert json.loads(out)["chunks"] == first["chunks"]
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        code, out, err = cli("fleet", "assign", "digits", "1", "--device", "dev-1", *common)
        assert code == 0, err
        assert "assigned digits v1 to devices/dev-1" in out
        wait_for(committed(config, 1))


def test_publish_over_mutual_tls(
    cli: Cli, tmp_path: Path, tls_broker: Broker, keyring: Path
) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    cert, key = tls_broker.client_cert("operator")
    code, _, err = cli(
        "fleet",
        "publish",
        bundle,
        "--repo",
        tmp_path / "repo",
        "--keys",
        keyring,
        "--broker",
        tls_broker.url,
        "--ca",
        tls_broker.ca_path,
        "--client-cert",
        cert,
        "--client-key",
        key,
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("assign", "digits", "1"), "exactly one of --device"),
        (("assign", "digits", "1", "--device", "a", "--group", "b"), "exactly one of --device"),
        (("assign", "digits", "1", "--device", "cam/1"), "must be 1-64"),
        (("assign", "digits", "one", "--device", "cam-1"), "MAJOR.MINOR.PATCH"),
        (("assign", "digits", "1", "--group", "g", "--broker", "http://x"), "is not mqtt://"),
        (("assign", "digits", "1", "--group", "g", "--broker", "mqtts://h:8883"), "no --ca"),
    ],
)
def test_bad_input_is_one_line(
    cli: Cli, tmp_path: Path, keyring: Path, args: tuple[str, ...], phrase: str
) -> None:
    # Nothing listens on the default broker port here: a check that came too late would fail
    # with "cannot reach the broker" instead of the expected line.
    fallback = () if "--broker" in args else ("--broker", f"mqtt://127.0.0.1:{free_port()}")
    code, _, err = cli("fleet", *args, "--repo", tmp_path / "repo", "--keys", keyring, *fallback)
    assert code != 0
    assert phrase in one_error_line(err)


def test_an_unreachable_broker_is_one_line(cli: Cli, tmp_path: Path, keyring: Path) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    code, _, err = cli(
        "fleet",
        "publish",
        bundle,
        "--repo",
        tmp_path / "repo",
        "--keys",
        keyring,
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
    )
    assert code == 8
    assert "cannot reach the broker" in one_error_line(err)


def test_publish_signs_an_unsigned_build_with_the_fleet_keys_once(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    from edge_sdk.core.bundle import read_bundle
    from edge_sdk.core.trust import verify_bundle
    from edge_sdk.signing.keys import load_trust_root

    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1, signed=False))
    common = ("--repo", tmp_path / "repo", "--keys", keyring, "--broker", broker.url)
    code, out, err = cli("fleet", "publish", bundle, *common, "--json")
    assert code == 0, err
    assert json.loads(out)["signed_now"] >= 1 and "signed " in err
    # Written back: the file now verifies, and publishing it again changes nothing.
    verify_bundle(load_trust_root(keyring / "root.json"), read_bundle(bundle), "bundle")
    code, out, err = cli("fleet", "publish", bundle, *common, "--json")
    assert code == 0, err
    assert json.loads(out)["signed_now"] == 0 and json.loads(out)["sent_chunks"] == 0
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        code, _, err = cli("fleet", "assign", "digits", "1", "--device", "dev-1", *common)
        assert code == 0, err
        wait_for(committed(config, 1))


def test_publish_refuses_a_bundle_signed_by_another_fleet_before_connecting(
    cli: Cli, tmp_path: Path, keyring: Path, signing_keys_t2: Path
) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(signing_keys_t2, 1))
    before = bundle.read_bytes()
    code, _, err = cli(
        "fleet",
        "publish",
        bundle,
        "--repo",
        tmp_path / "repo",
        "--keys",
        keyring,
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
    )
    assert code == 6, err
    line = one_error_line(err)
    assert "the fleet's devices would refuse this bundle" in line
    assert bundle.read_bytes() == before and not (tmp_path / "repo").exists()
