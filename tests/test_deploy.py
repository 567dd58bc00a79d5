"""The deployment files and the protocol document against the code they describe.

``deploy/systemd/edge-agent.service`` must start the agent the way the CLI expects and keep its
sandbox; ``docs/protocol.md`` must not drift from ``edge_sdk.core.wire.topics`` (topic tree, broker
ACL) or ``agent.update.machine`` (the state table): those are checked by evaluating the
document's ACL and tables against what the code produces.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from paho.mqtt.client import topic_matches_sub

from agent.config import ProbationConfig
from agent.mqtt_link import SESSION_EXPIRY_S
from agent.update.machine import TRANSITIONS, State
from edge_sdk.core import chunking
from edge_sdk.core.wire.topics import Topics

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "systemd" / "edge-agent.service"
PROTOCOL = REPO / "docs" / "protocol.md"

DEVICE, OTHER_DEVICE, GROUP, MODEL = "cam-01", "cam-02", "lobby", "digits"
OPERATOR = "operator"
SHA = "ab" * 32
TOPICS = Topics("edge", "default")


# --- the systemd unit ---------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        strict=False,  # systemd allows repeated keys (SystemCallFilter=); see _all_values
        interpolation=None,
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        empty_lines_in_values=False,
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(), source=str(UNIT))
    return parser


def _all_values(key: str) -> list[str]:
    """Every value of a key that may repeat (configparser keeps only the last)."""
    values = []
    for line in UNIT.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")) and name.strip() == key:
            values.append(value.strip())
    return values


def test_unit_runs_the_agent_with_its_config() -> None:
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "edge-agent"
    assert argv[1:] == ["run", "--config", "/etc/edge-agent/agent.toml"]
    assert service["Type"] == "simple"
    assert service["User"] == service["Group"] == "edge-agent"
    assert service["DynamicUser"] == "no"
    # agent.toml's state_dir is /var/lib/edge-agent: the directory systemd creates and chowns.
    assert service["StateDirectory"] == "edge-agent"
    assert service["ConfigurationDirectory"] == "edge-agent"


def test_unit_hardening() -> None:
    service = _unit()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "no",  # a documented choice: some runtimes need W+X
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in _all_values("SystemCallFilter")


def test_unit_stops_and_restarts_like_the_agent_expects() -> None:
    unit = _unit()
    service = unit["Service"]
    # SIGTERM is the signal the agent handles (publish status, offline presence, disconnect).
    assert service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"]
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"]
    # systemd must restart the agent more often than it takes the agent to call a crash loop
    # (max_restarts interrupted starts, then one more that acts on it).
    burst = int(unit["Unit"]["StartLimitBurst"])
    assert burst > ProbationConfig().max_restarts + 1
    assert unit["Unit"]["StartLimitIntervalSec"]


def _real_edge_agent(tmp_path: Path) -> Path:
    """An executable to stand in for ExecStart's path, which is not installed on a test host."""
    found = shutil.which("edge-agent") or str(Path(sys.executable).parent / "edge-agent")
    if Path(found).is_file():
        return Path(found)
    stub = tmp_path / "edge-agent"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return stub


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    argv0 = shlex.split(_unit()["Service"]["ExecStart"])[0]
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(argv0, str(_real_edge_agent(tmp_path))))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    # verify exits 0 even for unknown keys or unparsable values; it only prints them.
    complaints = [line for line in output.splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not complaints, output


# --- docs/protocol.md against the code ----------------------------------------------------------


def _section(heading: str) -> str:
    """The text of ``docs/protocol.md`` under ``heading`` up to the next heading of its level."""
    text = PROTOCOL.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    end = re.search(rf"^{re.escape(level)} ", text[start + len(heading) :], re.MULTILINE)
    return text[start : start + len(heading) + end.start()] if end else text[start:]


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _table(text: str, header: str) -> list[list[str]]:
    """Rows (cells stripped) of the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


@dataclass(frozen=True)
class Rule:
    user: str | None  # None: a pattern (every client); else the ``user`` block it sits in
    access: str
    topic: str


def _acl() -> list[Rule]:
    blocks = [b for b in _code_blocks(_section("### Mosquitto ACL")) if "pattern " in b]
    assert len(blocks) == 1, "the ACL section should hold exactly one ACL file"
    rules, user = [], "(anonymous)"
    for raw in blocks[0].splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # '#' inside a topic is a wildcard, not a comment
            continue
        words = line.split()
        if words[0] == "user":
            user = words[1]
        elif words[0] in ("pattern", "topic"):
            access, topic = (words[1], words[2]) if len(words) == 3 else ("readwrite", words[1])
            assert access in ("read", "write", "readwrite"), line
            rules.append(Rule(None if words[0] == "pattern" else user, access, topic))
        else:
            raise AssertionError(f"unexpected ACL line {line!r}")
    return rules


def _allowed(rules: list[Rule], identity: str, topic: str, access: str) -> bool:
    """Mosquitto's decision for a certificate whose CN (username) is ``identity``."""
    for rule in rules:
        if rule.user is None:
            topic_filter = rule.topic.replace("%u", identity).replace("%c", identity)
        elif rule.user == identity:
            topic_filter = rule.topic
        else:
            continue
        if access in rule.access and topic_matches_sub(topic_filter, topic):
            return True
    return False


def _device_topics(topics: Topics, device: str) -> list[str]:
    return [topics.status(device), topics.presence(device), topics.events(device)]


def _fleet_topics(topics: Topics) -> list[str]:
    """What only the operator writes: the repository and desired state."""
    return [
        topics.metadata_file("timestamp.json"),
        topics.metadata_file("1.root.json"),
        topics.chunk(SHA),
        topics.desired_device(DEVICE, MODEL),
        topics.desired_group(GROUP, MODEL),
    ]


def test_acl_lets_a_device_do_what_the_agent_does() -> None:
    rules = _acl()
    for topic in _device_topics(TOPICS, DEVICE):
        assert _allowed(rules, DEVICE, topic, "write"), topic
    for topic in _fleet_topics(TOPICS):
        assert _allowed(rules, DEVICE, topic, "read"), topic


def test_acl_confines_a_device() -> None:
    rules = _acl()
    for topic in _fleet_topics(TOPICS):
        assert not _allowed(rules, DEVICE, topic, "write"), topic
    for topic in [
        *_device_topics(TOPICS, OTHER_DEVICE),
        TOPICS.desired_device(OTHER_DEVICE, MODEL),
    ]:
        assert not _allowed(rules, DEVICE, topic, "read"), topic
        assert not _allowed(rules, DEVICE, topic, "write"), topic
    elsewhere = Topics("edge", "other")
    for topic in [*_device_topics(elsewhere, DEVICE), *_fleet_topics(elsewhere)]:
        assert not _allowed(rules, DEVICE, topic, "read"), topic
        assert not _allowed(rules, DEVICE, topic, "write"), topic


def test_acl_lets_the_operator_publish_and_watch() -> None:
    rules = _acl()
    for topic in _fleet_topics(TOPICS):
        assert _allowed(rules, OPERATOR, topic, "write"), topic
    for topic in _device_topics(TOPICS, DEVICE):
        assert _allowed(rules, OPERATOR, topic, "read"), topic


def test_every_acl_rule_matches_a_topic_the_code_uses() -> None:
    used = [*_device_topics(TOPICS, DEVICE), *_fleet_topics(TOPICS)]
    for rule in _acl():
        topic_filter = rule.topic.replace("%u", DEVICE).replace("%c", DEVICE)
        assert any(topic_matches_sub(topic_filter, t) for t in used), rule


def test_acl_section_names_the_identity_setting() -> None:
    assert "use_identity_as_username true" in _section("## 2. Broker")


def _render(template: str) -> str:
    for placeholder, value in {
        "<id>": DEVICE,
        "<group>": GROUP,
        "<model>": MODEL,
        "<file>": "timestamp.json",
        "<sha256>": SHA,
    }.items():
        template = template.replace(placeholder, value)
    return template


def test_topic_tree_table_is_the_code_layout() -> None:
    rows = _table(_section("## 1. Topic tree"), "| Topic |")
    documented = {_render(row[0].strip("`")) for row in rows}
    produced = {
        TOPICS.metadata_file("timestamp.json"),
        TOPICS.chunk(SHA),
        TOPICS.desired_device(DEVICE, MODEL),
        TOPICS.desired_group(GROUP, MODEL),
        *_device_topics(TOPICS, DEVICE),
    }
    assert documented == produced


def test_documented_subscriptions_and_urls_are_the_code_ones() -> None:
    text = PROTOCOL.read_text()
    quoted = {_render(q) for q in re.findall(r"`([^`\s]+)`", text)}
    assert set(TOPICS.desired_filters(DEVICE, GROUP)) <= quoted
    assert f"mqtt:{TOPICS.metadata}/" in quoted


def test_state_table_is_the_transition_table() -> None:
    rows = _table(_section("## 9. Update state machine (per model)"), "| From | Event | To |")
    documented = set()
    for row in rows:
        events = re.findall(r"`([a-z_]+)`", row[1])
        assert events, row
        for state in row[0].split(","):
            for event in events:
                documented.add((state.strip(), event, row[2]))
    produced = {(str(s), str(e), str(t)) for (s, e), t in TRANSITIONS.items()}
    assert documented == produced


def test_recovery_table_covers_every_state() -> None:
    rows = _table(_section("### Recovery after a restart"), "| Journal state |")
    states = [s.strip() for row in rows for s in row[0].split(",")]
    assert sorted(states) == sorted(str(s) for s in State)


def test_documented_constants_are_the_code_ones() -> None:
    text = PROTOCOL.read_text()
    assert f"{SESSION_EXPIRY_S} s" in text
    sizes = (chunking.MIN_CHUNK, chunking.AVG_CHUNK, chunking.MAX_CHUNK)
    assert "min {} KiB, avg {} KiB, max {} KiB".format(*(n // 1024 for n in sizes)) in text
    assert chunking._SEED.decode() in text
    assert f"over a {chunking.WINDOW}-byte window" in text
