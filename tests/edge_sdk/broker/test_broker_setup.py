"""``broker init``'s text generation (edge_sdk.broker.config_text) and input checks
(edge_sdk.broker.settings): pure; no broker, no files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from edge_sdk.broker.config_text import acl_text, broker_info, export_line, mosquitto_conf
from edge_sdk.broker.enroll import EnrollRequest, agent_toml, check_device_id
from edge_sdk.broker.settings import (
    AUTOSAVE_INTERVAL_S,
    MAX_PACKET_SIZE,
    make_settings,
    parse_listen,
)
from edge_sdk.broker.setup import BrokerInfo
from edge_sdk.errors import InputError

PROTOCOL = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def _doc_block(heading: str) -> str:
    """The first fenced block after ``heading`` in docs/protocol.md."""
    text = PROTOCOL.read_text()
    after = text[text.index(heading) :]
    match = re.search(r"```\n(.*?)```", after, re.S)
    assert match is not None, heading
    return match.group(1)


def test_docs_show_exactly_the_generated_acl() -> None:
    assert _doc_block("### Mosquitto ACL") == acl_text("edge", "default")


def test_acl_confines_devices_to_their_subtree_for_any_prefix_and_fleet() -> None:
    acl = acl_text("site/a", "plant-2")
    lines = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "pattern readwrite site/a/plant-2/devices/%u/#",
        "pattern read site/a/plant-2/desired/devices/%u/#",
        "pattern read site/a/plant-2/desired/groups/#",
        "pattern read site/a/plant-2/repo/#",
        "user operator",
        "topic readwrite site/a/plant-2/#",
    ]
    # A `topic` line before the first `user` line would apply to anonymous clients only.
    first_user = lines.index("user operator")
    assert not any(line.startswith("topic ") for line in lines[:first_user])


@pytest.mark.parametrize(("prefix", "fleet"), [("edge", "a+b"), ("ed#ge", "x"), ("edge", "")])
def test_acl_refuses_wildcards_in_prefix_or_fleet(prefix: str, fleet: str) -> None:
    with pytest.raises(InputError):
        acl_text(prefix, fleet)


def _directives(conf: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in conf.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            found.setdefault(key, []).append(value)
    return found


def test_config_is_mutual_tls_with_the_acl_and_persistence(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "b", listen="10.0.0.5:8884", hostnames=("broker.lan",))
    d = _directives(mosquitto_conf(s))
    # The devices' listener, then the operator's (the next port by default).
    assert d["listener"] == ["8884 10.0.0.5", "8885 10.0.0.5"]
    assert d["require_certificate"] == ["true", "true"]
    assert d["use_identity_as_username"] == ["true", "true"]
    # Devices: the client id is the certificate's CN, so no device takes over another's
    # session; the operator keeps the ids it sends (one per command).
    assert d["use_username_as_clientid"] == ["true"]
    assert d["allow_anonymous"] == ["false"]
    assert d["tls_version"] == ["tlsv1.2", "tlsv1.2"]
    assert d["user"] == ["mosquitto"]
    assert d["acl_file"] == [str(s.directory / "acl")]
    assert d["cafile"] == [str(s.directory / "ca.pem"), str(s.directory / "operator-ca.pem")]
    assert d["certfile"] == [str(s.directory / "server.pem")] * 2
    assert d["keyfile"] == [str(s.directory / "server.key")] * 2
    assert d["persistence"] == ["true"]
    assert d["persistence_location"] == [f"{s.directory / 'data'}/"]
    assert int(d["autosave_interval"][0]) == AUTOSAVE_INTERVAL_S <= 300
    assert d["set_tcp_nodelay"] == ["true"]
    assert int(d["max_queued_messages"][0]) >= 1000
    # The CA keys sign devices and the operator; the broker never needs them.
    assert "ca.key" not in mosquitto_conf(s)
    # Listener options only bind to a listener when they come after its line.
    conf = mosquitto_conf(s).splitlines()
    listener = next(i for i, line in enumerate(conf) if line.startswith("listener "))
    for option in ("cafile", "certfile", "keyfile", "require_certificate"):
        assert next(i for i, line in enumerate(conf) if line.startswith(option)) > listener
    operator = conf.index("listener 8885 10.0.0.5")
    assert conf.index("use_username_as_clientid true") < operator
    assert conf.index(f"cafile {s.directory / 'operator-ca.pem'}") > operator


def test_config_has_every_setting_the_protocol_doc_asks_for(tmp_path: Path) -> None:
    ours = _directives(mosquitto_conf(make_settings(tmp_path)))
    for key in _directives(_doc_block("### Broker settings the protocol needs")):
        assert key in ours, key


def test_max_packet_size_is_the_agents_default() -> None:
    from agent.config import LimitsConfig
    from agent.daemon import _PACKET_OVERHEAD

    limits = LimitsConfig()
    agent_default = max(limits.max_chunk_bytes, limits.max_metadata_bytes) + _PACKET_OVERHEAD
    assert agent_default == MAX_PACKET_SIZE
    assert f"max_packet_size {MAX_PACKET_SIZE}\n" in mosquitto_conf(make_settings(Path("/x")))


def test_url_and_listen_address_forms(tmp_path: Path) -> None:
    s = make_settings(tmp_path, listen="[::]:8883", hostnames=("::1", "localhost"))
    assert s.url == "mqtts://[::1]:8883"
    assert s.listen == "[::]:8883"
    assert "listener 8883 ::\n" in mosquitto_conf(s)
    info = broker_info(make_settings(tmp_path, hostnames=("b.example.com", "10.1.1.1")))
    assert info["url"] == "mqtts://b.example.com:8883"
    assert info["fleet"] == "default" and info["topic_prefix"] == "edge"


def test_export_line_names_every_operator_variable(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "my broker", fleet="f2")
    line = export_line(s)
    assert line.startswith("export EDGE_SDK_BROKER=mqtts://localhost:8884 ")  # the operator's
    for name in ("CA", "CERT", "KEY", "DIR"):
        assert f"EDGE_SDK_BROKER_{name}=" in line
    assert "EDGE_SDK_FLEET=f2" in line
    assert "'" in line  # the space in the path is quoted for the shell


@pytest.mark.parametrize(
    "listen", ["8883", "0.0.0.0", "0.0.0.0:0", "0.0.0.0:65536", "host name:1", ":::1", "[x]:1"]
)
def test_bad_listen_addresses(listen: str) -> None:
    with pytest.raises(InputError, match="--listen"):
        parse_listen(listen)


@pytest.mark.parametrize("listen", ["0.0.0.0:8883", "127.0.0.1:1", "[::1]:8883", "lan-if:8883"])
def test_good_listen_addresses(listen: str) -> None:
    host, port = parse_listen(listen)
    assert port > 0 and host


@pytest.mark.parametrize("hostname", ["broker host", "a_b", "", "-x", "x..y"])
def test_bad_hostnames(tmp_path: Path, hostname: str) -> None:
    with pytest.raises(InputError, match="--hostname"):
        make_settings(tmp_path, hostnames=(hostname,))


@pytest.mark.parametrize("user", ["mosq\nuser root", "", "a b", "x" * 40])
def test_run_as_cannot_inject_config_lines(tmp_path: Path, user: str) -> None:
    with pytest.raises(InputError, match="--run-as"):
        make_settings(tmp_path, run_as=user)


def test_directory_with_a_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="control characters"):
        make_settings(tmp_path / "a\nlistener 1883")


@pytest.mark.parametrize(
    "device", ["a+b", "a/b", "#", "", "x" * 65, "operator", "Operator", "edge-sdk-operator"]
)
def test_device_ids_that_could_break_topics_or_acls_are_refused(device: str) -> None:
    with pytest.raises(InputError):
        check_device_id(device)


@pytest.mark.parametrize("device", ["cam-01", "x" * 64, "a.b_c-d", "0"])
def test_device_ids_accepted(device: str) -> None:
    assert check_device_id(device) == device


def test_agent_toml_text(tmp_path: Path) -> None:
    from edge_sdk.broker import pki

    ca = pki.create_ca("test")
    broker = BrokerInfo(tmp_path, "mqtts://b.lan:8883", "f2", "site/a", ca)
    request = EnrollRequest(
        "cam-01",
        "x86-64",
        ("digits", "kws"),
        tmp_path / "out",
        group="line-1",
        broker_toml="reconnect_min_s = 0.2",
        extra_toml="[report]\ninterval_s = 1.0",
    )
    document = tomllib.loads(agent_toml(request, broker, "x86-64", "root.json"))
    assert document["device_id"] == "cam-01"
    assert document["fleet"] == "f2" and document["group"] == "line-1"
    assert document["broker"] == {
        "url": "mqtts://b.lan:8883",
        "topic_prefix": "site/a",
        "ca": "ca.pem",
        "cert": "cam-01.pem",
        "key": "cam-01.key",
        "reconnect_min_s": 0.2,
    }
    assert [m["name"] for m in document["models"]] == ["digits", "kws"]
    assert document["report"] == {"interval_s": 1.0}


@pytest.mark.parametrize(
    ("listen", "operator_listen", "phrase"),
    [
        ("0.0.0.0:65535", None, "pass --operator-listen"),
        ("0.0.0.0:8883", "127.0.0.1:8883", "a listener of its own"),
        ("0.0.0.0:8883", "nowhere", "--operator-listen 'nowhere': expected ADDR:PORT"),
    ],
)
def test_the_operators_listener_needs_a_port_of_its_own(
    tmp_path: Path, listen: str, operator_listen: str | None, phrase: str
) -> None:
    with pytest.raises(InputError, match=re.escape(phrase)):
        make_settings(tmp_path, listen=listen, operator_listen=operator_listen)


def test_the_operator_dials_its_own_listener(tmp_path: Path) -> None:
    s = make_settings(tmp_path, listen="[::]:9000", hostnames=("b.lan",), operator_listen="[::1]:7")
    assert (s.url, s.operator_url, s.operator_listen) == (
        "mqtts://b.lan:9000",
        "mqtts://b.lan:7",
        "[::1]:7",
    )
    assert broker_info(s)["operator_url"] == "mqtts://b.lan:7"
    assert "listener 7 ::1\n" in mosquitto_conf(s)
