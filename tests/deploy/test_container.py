"""The agent's OCI image (deploy/container/): built here by deploy/container/build.sh with
podman or buildah on a base made by debootstrap from Debian's packages (no registry).

What is checked, and how: the built image's configuration as podman/buildah inspect reports it;
its file system through a mounted working container; and its entry point and healthcheck
command run *outside* any container: chroot into that file system as the image's user, with its
environment and working directory, on the host's network. No container is started (these
machines may not run one), so the runtime's own handling of USER, VOLUME and HEALTHCHECK is
what the inspected configuration says, not something observed here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from agent.cli import CONFIG_ENV, DEFAULT_CONFIG
from edge_sdk import __version__
from testing.agents import Operator, make_bundle
from testing.mosquitto import Broker, free_port
from tests.deploy.image import TAG, Image, build, builder, chroot_argv, remove, storage_env

USER = "10001:10001"
STATE = "/var/lib/edge-agent"
AGENT = "/opt/edge-agent/bin/edge-agent"


def _cannot(reason: str) -> NoReturn:
    """CI installs podman and runs as root (.ci/run): there a missing tool is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must build the image (.ci/run installs podman, debootstrap)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    tool = builder()
    if tool is None:
        _cannot("neither podman nor buildah can run here (apt-get install podman)")
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        _cannot(
            "the base image is made by debootstrap, which needs root and the debootstrap package"
        )
    storage = tmp_path_factory.mktemp("containers")
    env = storage_env(storage, tool)
    try:
        yield build(env, tool)
    finally:
        remove(tool, env, TAG)
        shutil.rmtree(storage, ignore_errors=True)


def test_build_sh_reports_the_image(image: Image) -> None:
    assert f"built {image.tag}" in image.build_output
    print(f"image built in {image.build_seconds:.0f} s, {image.config()['Size'] / 1e6:.0f} MB")


def test_inspected_config_runs_the_agent_as_non_root_with_its_config_from_the_env(
    image: Image,
) -> None:
    config = image.config()
    assert config["User"] == USER  # numeric, so runAsNonRoot can verify it
    assert config["Entrypoint"] == [AGENT, "run"]
    env = dict(item.split("=", 1) for item in config["Env"])
    # The names the agent's CLI reads: the variable and its default path.
    assert env[CONFIG_ENV] == str(DEFAULT_CONFIG)
    assert env["PATH"].startswith("/opt/edge-agent/bin:")
    assert config["WorkingDir"] == STATE
    assert config.get("StopSignal") == "SIGTERM"


def test_inspected_config_has_the_state_volume_and_a_readyz_healthcheck(image: Image) -> None:
    config = image.config()
    assert list(config["Volumes"]) == [STATE]
    check = config["Healthcheck"]
    assert check and check["Test"][0] == "CMD", check
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["EDGE_AGENT_READYZ"] == "http://127.0.0.1:8470/readyz"  # agent.toml's default
    # The API listens on loopback only (agent.config refuses anything else): a published port
    # would reach nothing, so the image exposes none.
    assert not config.get("ExposedPorts")


def test_image_files_user_volume_owner_and_a_one_runtime_install(image: Image) -> None:
    with image.rootfs() as root:
        passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").open()}
        assert passwd["edge-agent"][2:4] == ["10001", "10001"]
        assert passwd["edge-agent"][6].strip() == "/usr/sbin/nologin"
        stat = (root / STATE.lstrip("/")).stat()
        assert (stat.st_uid, stat.st_gid) == (10001, 10001)
        site = root / "opt/edge-agent/lib/python3.11/site-packages"
        installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
        assert {"onnxruntime", "paho_mqtt", "uvicorn", "prometheus_client"} <= installed
        # The device install: no build tooling, no second runtime, no pip to change it.
        unwanted = {"onnx", "tensorflow", "tensorflow_cpu", "torch", "ai_edge_litert", "pip"}
        assert not installed & unwanted, installed & unwanted


def _run(root: Path, config: dict[str, object], argv: list[str]) -> list[str]:
    env = [str(item) for item in config["Env"]]  # type: ignore[attr-defined]
    return chroot_argv(root, str(config["User"]), str(config["WorkingDir"]), argv, env)


def test_entrypoint_prints_the_version_chrooted_as_the_image_user(image: Image) -> None:
    config = image.config()
    with image.rootfs() as root:
        argv = _run(root, config, [AGENT, "--version"])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["edge-agent", __version__]


def _healthcheck(root: Path, config: dict[str, object], port: int) -> int:
    """The image's HEALTHCHECK command, with EDGE_AGENT_READYZ on the test's port."""
    check = config["Healthcheck"]
    test = list(check["Test"][1:])  # type: ignore[index]
    env = [
        f"EDGE_AGENT_READYZ=http://127.0.0.1:{port}/readyz"
        if e.startswith("EDGE_AGENT_READYZ=")
        else e
        for e in config["Env"]  # type: ignore[attr-defined]
    ]
    argv = chroot_argv(root, str(config["User"]), str(config["WorkingDir"]), test, env)
    return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode


def test_entrypoint_chrooted_installs_an_update_and_the_healthcheck_turns_ready(
    image: Image, broker: Broker, keyring: Path, tmp_path: Path
) -> None:
    """The image's ENTRYPOINT + CMD, its Env and User, against an agent.toml at the image's
    EDGE_AGENT_CONFIG path with state in its volume: it connects to a real Mosquitto, installs
    a published and assigned bundle, and the image's HEALTHCHECK command goes from failing
    (not ready) to passing; /metrics answers on the same port."""
    config = image.config()
    port = free_port()
    with image.rootfs() as root:
        etc = root / str(DEFAULT_CONFIG.parent).lstrip("/")
        shutil.copy(keyring / "root.json", etc / "root.json")
        (etc / DEFAULT_CONFIG.name).write_text(
            'device_id = "box-01"\nprofile = "x86-64"\n'
            f'state_dir = "{STATE}"\ntrust_root = "{DEFAULT_CONFIG.parent / "root.json"}"\n'
            f'[broker]\nurl = "{broker.url}"\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n'
            '[[models]]\nname = "digits"\n[probation]\nseconds = 0.5\ncheck_interval_s = 0.1\n'
            f'[serving]\nlisten = "127.0.0.1:{port}"\n'
        )
        argv = _run(root, config, [*config["Entrypoint"], *config["Cmd"]])
        log = tmp_path / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_for(agent, log, f"{url}/healthz")
            assert _healthcheck(root, config, port) != 0  # 503: no model yet
            operator = Operator(keyring, tmp_path / "repo", broker)
            operator.publish(make_bundle(keyring, 1000000))
            operator.assign(1000000, device="box-01")
            _wait_for(agent, log, f"{url}/readyz")
            assert _healthcheck(root, config, port) == 0
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
                assert b"edge_agent_build_info" in reply.read()
            # The update landed in the volume, written as the image's user.
            versions = root / STATE.lstrip("/")
            assert any(p.stat().st_uid == 10001 for p in versions.rglob("*"))
        finally:
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(30)
        assert code == 0, log.read_text()


def _wait_for(agent: subprocess.Popen[bytes], log: Path, url: str) -> None:
    """Until ``url`` answers 200; the agent's log in the failure if it exits or time runs out."""
    deadline = time.monotonic() + 60
    while _get(url) != 200:
        if agent.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url}: not 200 (exit {agent.poll()}); log:\n{log.read_text()}")
        time.sleep(0.1)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def test_build_time_is_within_the_ci_budget(image: Image) -> None:
    """A regression guard, not a benchmark: CI has ~6 minutes for the whole image build."""
    assert image.build_seconds < 360, image.build_seconds
