"""agent.toml: a valid file loads, defaults apply, each bad input is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import (
    AgentConfig,
    BrokerConfig,
    LimitsConfig,
    ModelConfig,
    ProbationConfig,
    ReportConfig,
    check_identifier,
    load_config,
)
from edge_sdk.errors import ConfigError, InputError

FULL = """\
device_id = "cam-01"
fleet = "north"
group = "canary"
profile = "x86-64"
state_dir = "state"
trust_root = "root.json"

[broker]
url = "mqtts://broker.local:8884"
ca = "ca.pem"
cert = "device.pem"
key = "device.key"
topic_prefix = "acme/edge"
keepalive_s = 45
reconnect_min_s = 2
reconnect_max_s = 30.5
fetch_timeout_s = 12.0

[[models]]
name = "digits"
threads = 2

[[models]]
name = "detector"

[probation]
seconds = 10.0
max_restarts = 4
check_interval_s = 0.5

[limits]
max_metadata_bytes = 2048
max_chunk_bytes = 524288
max_artifact_bytes = 1000000
min_free_bytes = 0
keep_versions = 3

[report]
interval_s = 15
max_interval_s = 600
cpu_deadband = 25
memory_deadband = 0.2
disk_deadband = 0.05
"""

MINIMAL = """\
device_id = "cam-01"
profile = "x86-64"
state_dir = "/var/lib/edge-agent"
trust_root = "root.json"

[broker]
url = "mqtt://10.0.0.5"

[[models]]
name = "digits"
"""


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    for name in ("root.json", "ca.pem", "device.pem", "device.key"):
        (tmp_path / name).write_text("x")
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "agent.toml"
    path.write_text(text)
    return path


def test_full_file_loads_with_types_and_resolved_paths(conf_dir: Path) -> None:
    path = write(conf_dir, FULL)
    config = load_config(path)
    assert isinstance(config, AgentConfig)
    assert config.path == path
    assert (config.device_id, config.fleet, config.group) == ("cam-01", "north", "canary")
    assert config.profile.id == "x86-64"
    assert config.state_dir == conf_dir / "state"
    assert config.trust_root == conf_dir / "root.json"
    assert config.broker == BrokerConfig(
        host="broker.local",
        port=8884,
        tls=True,
        ca=conf_dir / "ca.pem",
        cert=conf_dir / "device.pem",
        key=conf_dir / "device.key",
        topic_prefix="acme/edge",
        keepalive_s=45,
        reconnect_min_s=2.0,
        reconnect_max_s=30.5,
        fetch_timeout_s=12.0,
        url="mqtts://broker.local:8884",
    )
    assert isinstance(config.broker.reconnect_min_s, float)
    assert config.models == (ModelConfig("digits", 2), ModelConfig("detector", 1))
    assert config.probation == ProbationConfig(seconds=10.0, max_restarts=4, check_interval_s=0.5)
    assert config.limits == LimitsConfig(2048, 524288, 1000000, 0, 3)
    assert config.report == ReportConfig(
        interval_s=15.0,
        max_interval_s=600.0,
        cpu_deadband=25.0,
        memory_deadband=0.2,
        disk_deadband=0.05,
    )
    assert not hasattr(config, "test")  # fault injection is not configuration (failpoints)


def test_minimal_file_gets_defaults(conf_dir: Path) -> None:
    config = load_config(write(conf_dir, MINIMAL))
    assert (config.fleet, config.group) == ("default", "default")
    assert config.state_dir == Path("/var/lib/edge-agent")
    b = config.broker
    assert (b.host, b.port, b.tls, b.ca, b.cert, b.key) == (
        "10.0.0.5",
        1883,
        False,
        None,
        None,
        None,
    )
    assert (b.topic_prefix, b.keepalive_s, b.reconnect_min_s, b.reconnect_max_s) == (
        "edge",
        30,
        1.0,
        60.0,
    )
    assert b.fetch_timeout_s == 10.0
    assert config.models == (ModelConfig("digits", 1),)
    assert config.probation == ProbationConfig(30.0, 3, 5.0)
    assert config.limits == LimitsConfig(1 << 20, 1 << 20, 256 << 20, 64 << 20, 2)
    assert config.report == ReportConfig(60.0, 900.0)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("interval_s = 3600", ReportConfig(3600.0, 3600.0)),  # unset: never below the sampling
        ("interval_s = 30\nmax_interval_s = 30", ReportConfig(30.0, 30.0)),  # every sample
        ("max_interval_s = 86400", ReportConfig(60.0, 86400.0)),
    ],
)
def test_the_status_max_age_is_at_least_the_sampling_interval(
    conf_dir: Path, report: str, expected: ReportConfig
) -> None:
    assert load_config(write(conf_dir, f"{MINIMAL}[report]\n{report}\n")).report == expected


def test_mqtts_default_port_and_relative_config_path(
    conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = MINIMAL.replace('"mqtt://10.0.0.5"', '"mqtts://broker.local"\nca = "ca.pem"')
    write(conf_dir, text)
    monkeypatch.chdir(conf_dir.parent)
    config = load_config(Path(conf_dir.name) / "agent.toml")
    assert (config.broker.port, config.broker.tls) == (8883, True)
    assert config.broker.ca == conf_dir / "ca.pem"  # absolute, whatever the working directory
    assert config.broker.ca is not None and config.broker.ca.is_absolute()


def replace_line(key: str, new: str) -> str:
    """MINIMAL with the line starting `key =` replaced by `new` ('' deletes it)."""
    lines = [new if line.startswith(f"{key} =") else line for line in MINIMAL.splitlines()]
    return "\n".join(line for line in lines if line) + "\n"


def top_level(line: str) -> str:
    return line + "\n" + MINIMAL


def in_broker(line: str, url: str = "mqtt://h") -> str:
    return MINIMAL.replace('url = "mqtt://10.0.0.5"', f'url = "{url}"\n{line}')


BROKER_TLS = in_broker('ca = "ca.pem"', url="mqtts://broker.local")

BAD = {
    "unknown top-level key": (
        top_level('devce_idd = "x"'),
        "devce_idd",
        "did you mean 'device_id'?",
    ),
    "misspelt section": (
        MINIMAL + "[brokr]\n",
        "brokr",
        "did you mean 'broker'?",
    ),
    "unknown nested key": (
        in_broker("keepalive = 3"),
        "broker.keepalive",
        "did you mean 'broker.keepalive_s'?",
    ),
    "unknown key in models": (
        MINIMAL + "thread = 2\n",
        "models[0].thread",
        "did you mean 'models[0].threads'?",
    ),
    "missing device_id": (replace_line("device_id", ""), "device_id", "missing"),
    "device_id with +": (replace_line("device_id", 'device_id = "cam+1"'), "device_id", "'+'"),
    "device_id with #": (replace_line("device_id", 'device_id = "cam#"'), "device_id", "'#'"),
    "device_id with /": (replace_line("device_id", 'device_id = "a/b"'), "device_id", "'/'"),
    "empty device_id": (replace_line("device_id", 'device_id = ""'), "device_id", "1-64"),
    "65-char device_id": (
        replace_line("device_id", f'device_id = "{"a" * 65}"'),
        "device_id",
        "1-64",
    ),
    "fleet with wildcard": (top_level('fleet = "+"'), "fleet", "1-64"),
    "group with slash": (top_level('group = "a/b"'), "group", "1-64"),
    "bad url scheme": (
        MINIMAL.replace("mqtt://10.0.0.5", "http://x"),
        "broker.url",
        "expected mqtt:// or mqtts://HOST[:PORT], got 'http://x'",
    ),
    "url with bad port": (MINIMAL.replace("10.0.0.5", "host:99999"), "broker.url", "HOST[:PORT]"),
    "url with a path": (MINIMAL.replace("10.0.0.5", "host/x"), "broker.url", "HOST[:PORT]"),
    "mqtts without ca": (
        MINIMAL.replace("mqtt://10.0.0.5", "mqtts://broker.local"),
        "broker.ca",
        "missing",
    ),
    "cert without key": (
        BROKER_TLS.replace('ca = "ca.pem"', 'ca = "ca.pem"\ncert = "device.pem"'),
        "broker.key",
        "both or neither",
    ),
    "key without cert": (
        BROKER_TLS.replace('ca = "ca.pem"', 'ca = "ca.pem"\nkey = "device.key"'),
        "broker.cert",
        "both or neither",
    ),
    "missing ca file": (
        BROKER_TLS.replace('ca = "ca.pem"', 'ca = "nope.pem"'),
        "broker.ca",
        "does not exist",
    ),
    "ca without tls": (
        in_broker('ca = "ca.pem"'),
        "broker.ca",
        "no TLS",
    ),
    "topic prefix with wildcard": (
        in_broker('topic_prefix = "a/#"'),
        "broker.topic_prefix",
        "'#'",
    ),
    "topic prefix with trailing slash": (
        in_broker('topic_prefix = "edge/"'),
        "broker.topic_prefix",
        "trailing",
    ),
    "keepalive out of range": (
        in_broker("keepalive_s = 4"),
        "broker.keepalive_s",
        "between 5 and 3600",
    ),
    "reconnect max below min": (
        in_broker("reconnect_max_s = 0.5"),
        "broker.reconnect_max_s",
        "reconnect_min_s",
    ),
    "missing trust root": (
        replace_line("trust_root", 'trust_root = "other.json"'),
        "trust_root",
        "does not exist",
    ),
    "unknown profile": (
        replace_line("profile", 'profile = "x86-6"'),
        "profile",
        "unknown profile 'x86-6'",
    ),
    "zero models": (MINIMAL.replace('[[models]]\nname = "digits"\n', ""), "models", "at least one"),
    "duplicate model names": (
        MINIMAL + '[[models]]\nname = "digits"\n',
        "models[1].name",
        "unique",
    ),
    "bad model name": (MINIMAL.replace('"digits"', '"a/b"'), "models[0].name", "1-64"),
    "keep_versions 1": (MINIMAL + "[limits]\nkeep_versions = 1\n", "limits.keep_versions", ">= 2"),
    "chunk cap below the protocol's": (
        MINIMAL + "[limits]\nmax_chunk_bytes = 1000\n",
        "limits.max_chunk_bytes",
        "raise it",
    ),
    "url with credentials": (
        MINIMAL.replace("mqtt://10.0.0.5", "mqtt://u:p@h"),
        "broker.url",
        "credentials",
    ),
    "string for int": (
        MINIMAL + '[probation]\nmax_restarts = "3"\n',
        "probation.max_restarts",
        "expected an integer, got a string '3'",
    ),
    "bool for int": (
        MINIMAL + "[limits]\nkeep_versions = true\n",
        "limits.keep_versions",
        "expected an integer",
    ),
    "fault injection section": (
        MINIMAL + '[test]\ncrash_at = "verifying"\n',
        "test",
        "unknown key; fault injection moved to the EDGE_AGENT_FAILPOINTS environment variable",
    ),
    "string for float": (
        MINIMAL + '[report]\ninterval_s = "60"\n',
        "report.interval_s",
        "expected a number",
    ),
    "negative float": (MINIMAL + "[probation]\nseconds = -1\n", "probation.seconds", ">= 0"),
    "infinite float": (MINIMAL + "[report]\ninterval_s = inf\n", "report.interval_s", "finite"),
    "negative deadband": (
        MINIMAL + "[report]\ncpu_deadband = -5\n",
        "report.cpu_deadband",
        ">= 0",
    ),
    "status max age below its sampling": (
        MINIMAL + "[report]\ninterval_s = 60\nmax_interval_s = 30\n",
        "report.max_interval_s",
        "30 is below report.interval_s (60)",
    ),
    "status max age below the default sampling": (
        MINIMAL + "[report]\nmax_interval_s = 0.5\n",
        "report.max_interval_s",
        "0.5 is below report.interval_s (60)",
    ),
    "status max age of zero": (
        MINIMAL + "[report]\nmax_interval_s = 0\n",
        "report.max_interval_s",
        "must be a finite number > 0",
    ),
    "table is not a table": (
        top_level("report = 5"),
        "report",
        "expected a table",
    ),
    "bad TOML syntax": (MINIMAL + "[limits]\nkeep_versions = \n", "is not valid TOML", "line 12"),
    "listen port of 5000 digits": (
        MINIMAL + '[serving]\nlisten = "127.0.0.1:' + "9" * 5000 + '"\n',
        "serving.listen",
        "loopback HOST:PORT",
    ),
    "listen port in superscript": (
        MINIMAL + '[serving]\nlisten = "127.0.0.1:\u00b2"\n',
        "serving.listen",
        "loopback HOST:PORT",
    ),
    "url with port 0": (MINIMAL.replace("10.0.0.5", "host:0"), "broker.url", "HOST[:PORT]"),
    "huge integer": (
        MINIMAL + "[limits]\nkeep_versions = 99999999999999999999\n",
        "limits.keep_versions",
        "must be an integer between 2 and 9007199254740991",
    ),
    "huge model threads": (
        MINIMAL.replace('name = "digits"', 'name = "digits"\nthreads = 100000'),
        "models[0].threads",
        "between 1 and 1024",
    ),
    "endless duration": (
        MINIMAL + "[report]\ninterval_s = 1e300\n",
        "report.interval_s",
        "must be at most 1e+09",
    ),
    "deeply nested arrays": (MINIMAL + "x = " + "[" * 5000, "is not valid TOML", "too deep"),
    "deeply dotted key": (MINIMAL + "a." * 20_000 + "b = 1\n", "has a dotted key", "32 levels"),
}


@pytest.mark.parametrize(("text", "key", "message"), list(BAD.values()), ids=list(BAD))
def test_bad_input_is_one_line_naming_the_key(
    conf_dir: Path, text: str, key: str, message: str
) -> None:
    path = write(conf_dir, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: {key}"), text
    assert message in text


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_config_errors_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"^device_id: 'a#b' must be"):
        check_identifier("a#b", "device_id")
    assert check_identifier("cam-01.a_b", "device_id") == "cam-01.a_b"


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "oversized"])
def test_a_config_that_is_not_a_small_regular_file_is_refused_unread(
    tmp_path: Path, kind: str
) -> None:
    import os

    path = tmp_path / "agent.toml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    elif kind == "directory":
        path.mkdir()
    elif kind == "oversized":
        path.write_text(MINIMAL + "#" * (2 << 20))
    else:
        path = Path("/dev/zero")  # reading it would never end
    expected = {
        "fifo": "is a FIFO",
        "device": "is a device",
        "directory": "is a directory",
        "oversized": "more than the 1 MiB allowed",
    }[kind]
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_state_dir_that_is_a_file_or_unwritable_is_one_line(conf_dir: Path) -> None:
    import os

    from agent.config import check_state_dir, prepare_state_dir

    config = load_config(write(conf_dir, MINIMAL.replace('"/var/lib/edge-agent"', '"state"')))
    config.state_dir.parent.mkdir(parents=True, exist_ok=True)
    config.state_dir.write_text("not a directory")
    for check in (prepare_state_dir, check_state_dir):
        with pytest.raises(ConfigError, match=r"state_dir: .* is not a directory"):
            check(config)
    config.state_dir.unlink()
    prepare_state_dir(config)
    assert config.state_dir.is_dir() and not list(config.state_dir.iterdir())
    if os.geteuid() != 0:  # root writes anywhere
        config.state_dir.chmod(0o500)
        try:
            with pytest.raises(ConfigError, match="is not writable"):
                prepare_state_dir(config)
        finally:
            config.state_dir.chmod(0o700)


def test_store_section_defaults_values_and_one_line_errors(conf_dir: Path) -> None:
    from agent.update.http_fetch import HttpSettings

    assert load_config(write(conf_dir, MINIMAL)).store == HttpSettings()
    from edge_sdk.broker import pki

    (conf_dir / "store-ca.pem").write_bytes(pki.create_ca("store").cert_pem)
    (conf_dir / "garbage.pem").write_text("x")
    text = MINIMAL + (
        '[store]\nca = "store-ca.pem"\nconnections = 8\ntimeout_s = 3\ntries = 5\n'
        "backoff_s = 0\nfallback = false\n"
    )
    store = load_config(write(conf_dir, text)).store
    assert store == HttpSettings(conf_dir / "store-ca.pem", 8, 3.0, 5, 0.0, False)
    for body, key, message in (
        ('ca = "missing.pem"', "store.ca", "does not exist"),
        ('ca = "garbage.pem"', "store.ca", "holds no PEM certificate"),
        ("connections = 0", "store.connections", "between 1 and 16"),
        ("connections = 17", "store.connections", "between 1 and 16"),
        ("tries = 11", "store.tries", "between 1 and 10"),
        ("timeout_s = 0", "store.timeout_s", "must be"),
        ("fallback = 1", "store.fallback", "expected a boolean"),
        ("mirrors = []", "store.mirrors", "unknown key"),
    ):
        path = write(conf_dir, MINIMAL + "[store]\n" + body + "\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value).startswith(f"{path}: {key}") and message in str(info.value), body
        assert "\n" not in str(info.value)
