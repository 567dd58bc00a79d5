"""deploy/compose/: the compose file and what it mounts, against the code and the image.

Parsed with PyYAML and checked: the four services, every mounted file exists in the repository,
Prometheus scrapes the port the agent's agent.toml serves on (sharing the agent's network
namespace, since that port is loopback-only), Grafana is provisioned with the Prometheus
datasource and the shipped dashboard. ``docker compose config`` / ``podman compose config``
validate the file too where one is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from agent.cli import CONFIG_ENV, DEFAULT_CONFIG
from agent.config import load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
DASHBOARD = REPO / "deploy" / "grafana" / "edge-agent.json"
TRUST_ROOT_VAR = "EDGE_AGENT_TRUST_ROOT"  # the user's root.json: the one mount not in the repo


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def _mounts(service: str) -> dict[str, str]:
    """Container path -> host source (a path relative to compose.yaml, or a named volume)."""
    mounts = {}
    for volume in _compose()["services"][service].get("volumes", []):
        if "${" in volume:  # ${VAR:?message}:target[:ro]: the message may hold ':'
            source, _, rest = volume.partition("}:")
            source += "}"
        else:
            source, _, rest = volume.partition(":")
        mounts[rest.split(":")[0]] = source
    return mounts


def _file(service: str, target: str) -> Path:
    source = _mounts(service)[target]
    assert source.startswith("."), f"{service}: {target} is not mounted from the repository"
    return (COMPOSE_DIR / source).resolve()


def _image_env() -> dict[str, str]:
    """The ENV instruction of the Containerfile."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("ENV ")]
    return dict(item.split("=", 1) for item in line.split()[1:])


def _agent_config(tmp_path: Path, trust_root: Path) -> Any:
    """The compose agent.toml through the agent's own loader, its root.json replaced by one
    from a real keyring (compose mounts the user's there)."""
    source = _file("agent", str(DEFAULT_CONFIG))
    text = source.read_text()
    mounted_root = _mounts("agent")
    root_target = next(t for t, s in mounted_root.items() if TRUST_ROOT_VAR in s)
    assert f'trust_root = "{root_target}"' in text
    copy = tmp_path / "agent.toml"
    copy.write_text(text.replace(root_target, str(trust_root)))
    return load_config(copy)


def test_services() -> None:
    assert set(_compose()["services"]) == {"mosquitto", "agent", "prometheus", "grafana"}


def test_every_mount_is_a_repository_file_or_a_declared_volume() -> None:
    doc = _compose()
    for name in doc["services"]:
        for target, source in _mounts(name).items():
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
            elif "${" in source:
                # Only the fleet's root.json comes from the user, with a message when unset.
                assert (name, target) == ("agent", "/etc/edge-agent/root.json"), source
                assert source.startswith(f"${{{TRUST_ROOT_VAR}:?"), source
            else:
                assert source in doc["volumes"], f"{name}: volume {source} is not declared"


def test_published_ports_are_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_agent_runs_the_image_with_its_config_and_state_volume(
    tmp_path: Path, keyring: Path
) -> None:
    agent = _compose()["services"]["agent"]
    assert agent["image"] == "localhost/edge-agent:latest"  # build.sh's default tag
    assert agent["environment"][CONFIG_ENV] == str(DEFAULT_CONFIG)
    assert _mounts("agent")["/var/lib/edge-agent"] == "agent-state"
    config = _agent_config(tmp_path, keyring / "root.json")
    assert config.state_dir == Path("/var/lib/edge-agent")  # the image's VOLUME
    # The image's HEALTHCHECK asks the port the agent serves on.
    readyz = urlsplit(_image_env()["EDGE_AGENT_READYZ"])
    assert (readyz.hostname, readyz.port) == (config.serving.host, config.serving.port)


def test_agent_dials_the_compose_broker(tmp_path: Path, keyring: Path) -> None:
    config = _agent_config(tmp_path, keyring / "root.json")
    conf = _file("mosquitto", "/mosquitto/config/mosquitto.conf").read_text()
    (listener,) = re.findall(r"^listener (\d+)\s*$", conf, re.MULTILINE)
    assert (config.broker.host, config.broker.port, config.broker.tls) == (
        "mosquitto",
        int(listener),
        False,
    )
    ports = _compose()["services"]["mosquitto"]["ports"]
    assert [p.rsplit(":", 1)[1] for p in ports] == [listener]


def test_prometheus_scrapes_the_agents_metrics_port(tmp_path: Path, keyring: Path) -> None:
    doc = _compose()
    prometheus = doc["services"]["prometheus"]
    # The agent's API is loopback-only: Prometheus must live in its network namespace.
    assert prometheus["network_mode"] == "service:agent"
    scrape = yaml.safe_load(_file("prometheus", "/etc/prometheus/prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (targets,) = [s["targets"] for s in job["static_configs"]]
    config = _agent_config(tmp_path, keyring / "root.json")
    assert targets == [f"{config.serving.host}:{config.serving.port}"]
    # Its own port is published by the service whose namespace it shares.
    assert "127.0.0.1:9090:9090" in doc["services"]["agent"]["ports"]


def test_grafana_is_provisioned_with_prometheus_and_the_shipped_dashboard() -> None:
    mounts = _mounts("grafana")
    datasources = yaml.safe_load(
        next(_file("grafana", "/etc/grafana/provisioning/datasources").glob("*.yaml")).read_text()
    )
    (source,) = datasources["datasources"]
    url = urlsplit(source["url"])
    # Prometheus answers on the agent service's address (network_mode: service:agent).
    assert (source["type"], url.hostname, url.port) == ("prometheus", "agent", 9090)
    assert source["isDefault"] is True
    providers = yaml.safe_load(
        next(_file("grafana", "/etc/grafana/provisioning/dashboards").glob("*.yaml")).read_text()
    )
    (provider,) = providers["providers"]
    folder = PurePosixPath(provider["options"]["path"])
    dashboards = [t for t in mounts if PurePosixPath(t).parent == folder]
    assert [_file("grafana", t) for t in dashboards] == [DASHBOARD]
    # The dashboard picks its datasource by type: the provisioned one is of that type.
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    assert {"type": "datasource", "query": source["type"]}.items() <= variables[0].items()


def _compose_tool() -> list[str] | None:
    for argv in (["docker", "compose"], ["podman", "compose"]):
        if shutil.which(argv[0]) is None:
            continue
        probe = subprocess.run([*argv, "version"], capture_output=True, timeout=60, check=False)
        if probe.returncode == 0:
            return argv
    return None


def test_compose_config_accepts_the_file(tmp_path: Path) -> None:
    tool = _compose_tool()
    if tool is None:
        pytest.skip("no `docker compose` or `podman compose` here; the checks above still ran")
    root = tmp_path / "root.json"
    root.write_text("{}")
    done = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", TRUST_ROOT_VAR: str(root)},
    )
    assert done.returncode == 0, done.stderr
