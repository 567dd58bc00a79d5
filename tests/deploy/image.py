"""The agent's OCI image, built by ``deploy/container/build.sh`` into a container storage of
the test's own (``CONTAINERS_STORAGE_CONF``), so nothing lands in or is removed from the
machine's images; inspected, and mounted for running its entry point outside a container.

These machines may not run containers (no user namespaces), so nothing here starts one:
podman/buildah build (RUN steps with chroot isolation), inspect, create a working container and
mount its root filesystem, all of which need no container runtime.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "deploy" / "container" / "build.sh"
BUILD_TIMEOUT_S = 600
BASE = "localhost/edge-agent-base:bookworm"  # what build.sh --debootstrap imports


def cache_dir() -> Path:
    """Where build.sh keeps the debootstrap root filesystem between runs (~130 MB)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "edge-sdk" / "container"


def builder() -> str | None:
    """EDGE_AGENT_BUILDER (as build.sh), else podman, else buildah: the first that answers
    ``--version``; None if neither runs."""
    wanted = os.environ.get("EDGE_AGENT_BUILDER")
    for tool in (wanted,) if wanted else ("podman", "buildah"):
        if shutil.which(tool) is None:
            continue
        done = subprocess.run([tool, "--version"], capture_output=True, timeout=60, check=False)
        if done.returncode == 0:
            return tool
    return None


@dataclass
class Image:
    tool: str
    tag: str
    env: dict[str, str]  # CONTAINERS_STORAGE_CONF: the test's own storage
    build_output: str
    build_seconds: float

    def cli(self, *argv: str) -> str:
        done = subprocess.run(
            [self.tool, *argv], capture_output=True, text=True, env=self.env, timeout=300
        )
        if done.returncode != 0:
            raise AssertionError(f"{self.tool} {' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def config(self) -> dict[str, Any]:
        """The image's run configuration (Docker schema: User, Env, Entrypoint, Healthcheck ...)."""
        if self.tool == "podman":
            (found,) = json.loads(self.cli("image", "inspect", self.tag))
            config: dict[str, Any] = dict(found["Config"])
            config["Healthcheck"] = found.get("Healthcheck")
            config["Size"] = found["Size"]
            return config
        found = json.loads(self.cli("inspect", "--type", "image", self.tag))
        config = dict(found["Docker"]["config"])
        (listed,) = json.loads(self.cli("images", "--json", self.tag))
        number, unit = listed["size"].split()  # buildah gives only "315 MB"
        config["Size"] = float(number) * {"kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
        return config

    @contextmanager
    def rootfs(self) -> Iterator[Path]:
        """A writable working container's root filesystem (the image plus a layer of its
        own), removed on exit; what a test writes there never reaches the image."""
        create = ("create", self.tag) if self.tool == "podman" else ("from", self.tag)
        container = self.cli(*create).strip().splitlines()[-1]
        try:
            yield Path(self.cli("mount", container).strip())
        finally:
            self.cli("umount", container)
            self.cli("rm", container)

    def remove(self) -> None:
        remove(self.tool, self.env, self.tag)


def remove(tool: str, env: dict[str, str], tag: str) -> None:
    """The image and its base, each if it was made (a failed build leaves neither tagged)."""
    for name in (tag, BASE):
        subprocess.run([tool, "rmi", "--force", name], capture_output=True, env=env, timeout=300)


def storage_env(storage: Path, tool: str) -> dict[str, str]:
    """The environment that points podman/buildah (and build.sh) at a storage in ``storage``."""
    storage.mkdir(parents=True, exist_ok=True)
    conf = storage / "storage.conf"
    conf.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{storage / "root"}"\n'
        f'runroot = "{storage / "run"}"\n'
    )
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "EDGE_AGENT_BUILDER": tool}


TAG = f"localhost/edge-agent:test-{os.getpid()}"


def build(env: dict[str, str], tool: str) -> Image:
    """Build the image with build.sh into the storage ``env`` names; the base from debootstrap
    (cached between runs)."""
    tag = TAG
    started = time.monotonic()
    done = subprocess.run(
        [str(BUILD_SH), "--debootstrap", str(cache_dir()), "--tag", tag],
        capture_output=True,
        text=True,
        env={**env, "PYTHON": sys.executable},
        timeout=BUILD_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise AssertionError(f"build.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Image(tool, tag, env, done.stdout + done.stderr, time.monotonic() - started)


def chroot_argv(
    rootfs: Path, user: str, workdir: str, argv: Sequence[str], env: Sequence[str]
) -> list[str]:
    """Run ``argv`` inside ``rootfs`` as the image would: its user, working directory and
    environment, with /proc, /sys and /dev of the host bound in a private mount namespace (gone
    when the process ends). The network is the host's: the image's loopback is this one."""
    script = (
        'r=$1; u=$2; shift 2; mount --rbind /proc "$r/proc"; mount --rbind /sys "$r/sys"; '
        'mount --rbind /dev "$r/dev"; exec chroot --userspec="$u" "$r" env -i "$@"'
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        str(rootfs),
        user,
        *env,
        "sh",
        "-c",
        'cd "$0" && exec "$@"',
        workdir,
        *argv,
    ]
