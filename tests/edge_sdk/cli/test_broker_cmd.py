"""``edge-sdk broker init`` and ``edge-sdk fleet enroll`` through the CLI, down to a real
Mosquitto started from the generated config and an agent started from the enrolled one."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from agent.config import load_config
from edge_sdk.core.wire.topics import Topics
from edge_sdk.fleet.publish import assign, publish_bundle
from edge_sdk.fleet.session import BrokerAddress, OperatorLink
from edge_sdk.signing.repository import Repository
from testing.agents import agent_thread, committed, make_bundle, wait_for
from testing.fleet_broker import FAST_BROKER_TOML, FAST_EXTRA_TOML, FleetBroker
from testing.mosquitto import BrokerRefused, connect_client, free_port, launch, terminate

Cli = Callable[..., tuple[int, str, str]]


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# -- broker init ---------------------------------------------------------------------------


def test_init_writes_the_broker_directory(cli: Cli, tmp_path: Path) -> None:
    d = tmp_path / "broker"
    code, out, err = cli("broker", "init", d, "--hostname", "broker.lan", "--listen", "[::]:8884")
    assert code == 0, err
    assert f"mosquitto -c {d / 'mosquitto.conf'}" in out
    # Devices dial --listen; the operator its own listener, the next port.
    assert "export EDGE_SDK_BROKER=mqtts://broker.lan:8885 " in out
    assert f"EDGE_SDK_BROKER_CERT={d / 'operator.pem'}" in out
    assert f"EDGE_SDK_BROKER_DIR={d}" in out
    for name in ("mosquitto.conf", "acl", "ca.pem", "server.pem", "operator.pem", "broker.json"):
        assert (d / name).is_file(), name
    for name in ("ca.key", "server.key", "operator.key", "operator-ca.key"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert (d / "data").is_dir()
    info = json.loads((d / "broker.json").read_text())
    assert info["url"] == "mqtts://broker.lan:8884"
    assert info["operator_url"] == "mqtts://broker.lan:8885"
    assert (info["fleet"], info["topic_prefix"], info["listen"]) == ("default", "edge", "[::]:8884")
    server = x509.load_pem_x509_certificate((d / "server.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["broker.lan"]


def test_init_json(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("broker", "init", tmp_path / "b", "--fleet", "f2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["url"] == "mqtts://localhost:8883"
    assert report["fleet"] == "f2"
    assert report["start_command"] == f"mosquitto -c {tmp_path / 'b' / 'mosquitto.conf'}"
    assert "EDGE_SDK_FLEET=f2" in report["export"]
    assert "topic readwrite edge/f2/#" in (tmp_path / "b" / "acl").read_text()


def test_init_refuses_to_replace_a_fleet_ca_without_force(cli: Cli, tmp_path: Path) -> None:
    d = tmp_path / "broker"
    assert cli("broker", "init", d)[0] == 0
    ca = (d / "ca.key").read_bytes()
    code, _, err = cli("broker", "init", d)
    assert code == 2
    assert "--force" in one_error_line(err)
    assert (d / "ca.key").read_bytes() == ca
    code, _, err = cli("broker", "init", d, "--force")
    assert code == 0, err
    assert (d / "ca.key").read_bytes() != ca


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--listen", "8883"), "--listen"),
        (("--listen", "0.0.0.0:70000"), "--listen"),
        (("--hostname", "broker host"), "--hostname"),
        (("--hostname", "ok.lan", "--hostname", "bad_name"), "--hostname"),
        (("--fleet", "a+b"), "fleet"),
        (("--topic-prefix", "edge/#"), "topic prefix"),
        (("--run-as", "x\ny"), "--run-as"),
    ],
)
def test_init_bad_input_is_one_line_and_writes_nothing(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    code, out, err = cli("broker", "init", tmp_path / "b", *args)
    assert code == 2
    assert says in one_error_line(err)
    assert out == ""
    assert not (tmp_path / "b").exists()


def test_init_as_non_root_notes_that_mosquitto_keeps_the_user(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 12345)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: pwd.struct_passwd(("alice",) + ("",) * 6))
    code, _, err = cli("broker", "init", tmp_path / "b")
    assert code == 0
    assert "keeps that user" in err


needs_root_and_mosquitto_user = pytest.mark.skipif(
    os.geteuid() != 0 or not any(u.pw_name == "mosquitto" for u in pwd.getpwall()),
    reason="needs root and a mosquitto user (Mosquitto only drops privileges when root)",
)


@needs_root_and_mosquitto_user
def test_init_warns_when_the_run_as_user_cannot_reach_the_directory(
    cli: Cli, tmp_path: Path
) -> None:
    # pytest's tmp_path is root-only 0700.
    code, _, err = cli("broker", "init", tmp_path / "b", "--run-as", "mosquitto")
    assert code == 0
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "chmod o+x" in warning[0]


@pytest.fixture()
def world_traversable_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="edge-sdk-broker-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@needs_root_and_mosquitto_user
def test_init_as_root_hands_the_files_to_mosquitto_and_the_broker_serves_tls(
    cli: Cli, world_traversable_dir: Path, keyring: Path
) -> None:
    d = world_traversable_dir / "broker"
    port, operator_port = free_port(), free_port()
    code, _, err = cli(
        "broker", "init", d, "--listen", f"127.0.0.1:{port}", "--hostname", "127.0.0.1",
        "--operator-listen", f"127.0.0.1:{operator_port}",
    )  # fmt: skip
    assert code == 0, err
    assert "warning" not in err
    mosquitto = pwd.getpwnam("mosquitto").pw_uid
    # A device enrolled, then revoked: the new CRL must stay readable by the broker's user.
    device_dir = world_traversable_dir / "cam-a"
    code, _, err = cli(
        "fleet", "enroll", "cam-a", "--profile", "x86-64", "--model", "digits", "--out",
        device_dir, "--broker-dir", d, "--trust-root", keyring / "root.json",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = cli("fleet", "revoke", "cam-a", "--broker-dir", d)
    assert code == 0, err
    for name in ("server.key", "server.pem", "ca.pem", "crl.pem", "acl", "data", "mosquitto.log"):
        assert (d / name).stat().st_uid == mosquitto, name
    assert (d / "operator-ca.pem").stat().st_uid == mosquitto
    for name in ("ca.key", "operator.key", "operator-ca.key"):
        assert (d / name).stat().st_uid == 0, name
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    proc, log = launch(d / "mosquitto.conf", d.parent / "stderr.log", port, d.parent)
    try:
        client = connect_client(
            "127.0.0.1",
            operator_port,
            "operator",
            ca_path=d / "ca.pem",
            cert=(d / "operator.pem", d / "operator.key"),
        )
        client.disconnect()
        client.loop_stop()
        with pytest.raises(BrokerRefused):
            connect_client(
                "127.0.0.1",
                port,
                "cam-a",
                ca_path=d / "ca.pem",
                cert=(device_dir / "cam-a.pem", device_dir / "cam-a.key"),
            )
        # It really dropped root: the process belongs to mosquitto.
        assert Path(f"/proc/{proc.pid}").stat().st_uid == mosquitto
    finally:
        terminate(proc, log)
    assert (d / "data" / "mosquitto.db").is_file()  # persistence was writable


# -- fleet enroll --------------------------------------------------------------------------


@pytest.fixture()
def broker_dir(cli: Cli, tmp_path: Path) -> Path:
    d = tmp_path / "broker"
    code, _, err = cli("broker", "init", d, "--hostname", "broker.lan")
    assert code == 0, err
    return d


def _enroll(cli: Cli, broker_dir: Path, keyring: Path, *args: str | Path) -> tuple[int, str, str]:
    common = ("--broker-dir", broker_dir, "--trust-root", keyring / "root.json")
    return cli("fleet", "enroll", *args, *common)


def test_enroll_writes_a_config_the_agent_loads(
    cli: Cli, tmp_path: Path, broker_dir: Path, keyring: Path
) -> None:
    out = tmp_path / "cam-01"
    code, stdout, err = _enroll(
        cli, broker_dir, keyring, "cam-01", "--profile", "x86-64", "--model", "digits",
        "--model", "kws", "--group", "line-1", "--out", out, "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    config = load_config(out / "agent.toml")
    assert config.device_id == "cam-01" and config.group == "line-1"
    assert config.profile.id == "x86-64"
    assert [m.name for m in config.models] == ["digits", "kws"]
    assert config.broker.url == "mqtts://broker.lan:8883" and config.broker.tls
    assert config.broker.cert == out / "cam-01.pem" and config.broker.key == out / "cam-01.key"
    assert config.trust_root == out / "root.json"
    assert (out / "root.json").read_bytes() == (keyring / "root.json").read_bytes()
    assert stat.S_IMODE((out / "cam-01.key").stat().st_mode) == 0o600

    cert = x509.load_pem_x509_certificate((out / "cam-01.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((broker_dir / "ca.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cam-01"
    cert.verify_directly_issued_by(ca)
    assert (out / "ca.pem").read_bytes() == (broker_dir / "ca.pem").read_bytes()

    record = json.loads((broker_dir / "devices" / "cam-01.json").read_text())
    assert record["device"] == "cam-01" and record["group"] == "line-1"
    assert record["profile"] == "x86-64" and record["enrolled_at"]
    assert record["serial"] == f"{cert.serial_number:x}" == report["serial"]
    assert record["sha256"] == report["sha256"] and len(record["sha256"]) == 64


def test_enroll_human_output(cli: Cli, tmp_path: Path, broker_dir: Path, keyring: Path) -> None:
    code, out, err = _enroll(
        cli, broker_dir, keyring, "cam-02", "--profile", "x86-64", "--model", "digits",
        "--out", tmp_path / "d",
    )  # fmt: skip
    assert code == 0, err
    assert "enrolled cam-02" in out and "edge-agent run --config" in out


@pytest.mark.parametrize("device", ["a+b", "a/b", "#", "", "x" * 65, "operator"])
def test_enroll_refuses_ids_that_break_topics_or_the_acl(
    cli: Cli, tmp_path: Path, broker_dir: Path, keyring: Path, device: str
) -> None:
    before = _tree(broker_dir)
    out = tmp_path / "out"
    code, stdout, err = _enroll(
        cli, broker_dir, keyring, device, "--profile", "x86-64", "--model", "digits", "--out", out
    )
    assert code == 2
    one_error_line(err)
    assert stdout == ""
    assert not out.exists()
    assert _tree(broker_dir) == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--profile", "x86_64", "--model", "digits"), "unknown profile"),
        (("--profile", "x86-64"), "--model"),
        (("--profile", "x86-64", "--model", "a/b"), "a/b"),
        (("--profile", "x86-64", "--model", "digits", "--group", "g+1"), "--group"),
        (("--profile", "x86-64", "--model", "digits", "--trust-root", "nope.json"), "nope.json"),
        (("--profile", "x86-64", "--model", "digits", "--broker-dir", "nowhere"), "broker init"),
    ],
)
def test_enroll_bad_input_is_one_line_and_writes_nothing(
    cli: Cli,
    tmp_path: Path,
    broker_dir: Path,
    keyring: Path,
    args: tuple[str, ...],
    says: str,
) -> None:
    before = _tree(broker_dir)
    out = tmp_path / "out"
    # Options given later win, so --trust-root/--broker-dir here override _enroll's.
    code, _, err = cli(
        "fleet", "enroll", "cam-01", "--broker-dir", broker_dir,
        "--trust-root", keyring / "root.json", "--out", out, *args,
    )  # fmt: skip
    assert code == 2, err
    assert says in one_error_line(err)
    assert not out.exists()
    assert _tree(broker_dir) == before


def test_re_enrolling_needs_force(
    cli: Cli, tmp_path: Path, broker_dir: Path, keyring: Path
) -> None:
    args = ("cam-01", "--profile", "x86-64", "--model", "digits", "--out", tmp_path / "d")
    code, out, err = _enroll(cli, broker_dir, keyring, *args, "--json")
    assert code == 0, err
    first = json.loads(out)["serial"]
    code, _, err = _enroll(cli, broker_dir, keyring, *args)
    assert code == 2
    assert "--force" in one_error_line(err)
    code, out, err = _enroll(cli, broker_dir, keyring, *args, "--force", "--json")
    assert code == 0, err
    assert json.loads(out)["serial"] != first
    record = json.loads((broker_dir / "devices" / "cam-01.json").read_text())
    assert record["serial"] == json.loads(out)["serial"]


def test_an_enrolled_agent_installs_what_the_operator_publishes(
    fleet_broker: FleetBroker, tmp_path: Path, keyring: Path
) -> None:
    config = fleet_broker.enroll("dev-1", broker_toml=FAST_BROKER_TOML, extra_toml=FAST_EXTRA_TOML)
    cert, key = fleet_broker.operator_cert
    port = fleet_broker.operator_port
    address = BrokerAddress("127.0.0.1", port, True, fleet_broker.ca_path, cert, key)
    topics = Topics("edge", "default")
    repo = Repository.create(tmp_path / "repo", keyring)
    with OperatorLink(address, "test-operator") as link:
        publish_bundle(make_bundle(keyring, 1), repo, link, topics)
    with agent_thread(config):
        with OperatorLink(address, "test-operator") as link:
            assign(keyring, repo.directory, link, topics, model="digits", version=1,
                   scope="devices/dev-1")  # fmt: skip
        wait_for(committed(config, 1), what="dev-1 to commit v1")
    presence = _retained(fleet_broker, topics.presence("dev-1"))
    assert presence is not None


def _retained(fleet_broker: FleetBroker, topic: str) -> bytes | None:
    import queue

    got: queue.Queue[bytes] = queue.Queue()
    client = fleet_broker.client("operator")
    client.on_message = lambda _c, _u, message: got.put(bytes(message.payload))
    client.subscribe(topic, qos=1)
    try:
        return got.get(timeout=2.0)
    except queue.Empty:
        return None


def test_a_profile_file_travels_with_the_config(
    cli: Cli, tmp_path: Path, broker_dir: Path, keyring: Path
) -> None:
    source = Path(__file__).resolve().parents[3] / "hardware_profiles" / "raspberry-pi-4.toml"
    profile = tmp_path / "site" / "my-pi.toml"
    profile.parent.mkdir()
    profile.write_text(source.read_text().replace('"raspberry-pi-4"', '"my-pi"', 1))
    out = tmp_path / "pi-1"
    code, _, err = _enroll(
        cli, broker_dir, keyring, "pi-1", "--profile", profile, "--model", "digits", "--out", out
    )
    assert code == 0, err
    assert (out / "my-pi.toml").is_file()
    assert load_config(out / "agent.toml").profile.id == "my-pi"
