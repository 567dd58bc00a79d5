"""The device install as a device gets it: its size on disk, and the idle agent's memory against
a bare Python process holding the same onnxruntime session, in one run.

1. Install size: a fresh virtual environment, ``pip install 'REPO[EXTRA]'`` (not editable, no
   dev tools), measured with ``du``, per device extra (``agent``, ``agent-tflite``), with its
   biggest packages.
2. Idle memory: the real ``edge-agent run`` from the ``agent`` environment (its console script,
   run outside the checkout so nothing else is importable), with a config, a real Mosquitto
   and a 10 MB model it installed through an update, serving its inference API on loopback;
   against a bare process of the same environment holding the same model in one onnxruntime
   session. Resident memory is read from /proc after both have settled.

The goal (issue 17) is an agent within 20 MB of the bare process. Run:
``python -m bench.bench_agent_rss`` (needs mosquitto and the package index; a few minutes,
most of it pip). ``--venv DIR`` reuses an ``agent`` environment made before.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_agent import BARE, FEATURES, memory_mb
from edge_sdk.signing.keys import init_keys
from testing.agents import (
    Operator,
    committed,
    make_bundle,
    matmul_model,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker

REPO = Path(__file__).resolve().parent.parent

MODEL_BYTES = 10 << 20
GOAL_MB = 20.0


def make_venv(directory: Path, extra: str) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    pip = [str(directory / "bin" / "pip"), "install", "--quiet", "--no-cache-dir"]
    subprocess.run([*pip, f"{REPO}[{extra}]"], check=True, cwd=directory)


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def biggest(venv: Path, count: int = 5) -> list[tuple[str, float]]:
    (site,) = venv.glob("lib/python*/site-packages")
    sizes = [(p.name, du_mb(p)) for p in site.iterdir() if p.is_dir()]
    return sorted(sizes, key=lambda s: -s[1])[:count]


def settled_memory(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """Median of a sample a second over ``seconds``, per process and field."""
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in pids}
    for _ in range(max(1, int(seconds))):
        time.sleep(1.0)
        for key, pid in pids.items():
            samples[key].append(memory_mb(pid))
    return {
        key: {f: statistics.median(s[f] for s in rows) for f in rows[0]}
        for key, rows in samples.items()
    }


def idle_memory(venv: Path, work: Path, seconds: float) -> dict[str, dict[str, float]]:
    keyring = work / "keys"
    init_keys(keyring, online_keys=1, threshold=1)
    with Broker(work / "broker") as broker:
        operator = Operator(keyring, work / "repo", broker)
        config = write_config(
            work / "dev",
            broker,
            keyring / "root.json",
            probation_s=0.0,
            serving={"listen": "127.0.0.1:0"},
        )
        log = (work / "agent.log").open("ab")
        agent = subprocess.Popen(
            [str(venv / "bin" / "edge-agent"), "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work,  # not the checkout: only the installed package is importable
        )
        bare = None
        try:
            model = matmul_model(FEATURES, MODEL_BYTES // (4 * FEATURES), seed=1)
            operator.publish(make_bundle(keyring, 1, artifact=model))
            operator.assign(1)
            wait_for(committed(config, 1), timeout=120, what="the agent's update")
            model_path = store(config).version_dir(1) / "model.onnx"
            bare = subprocess.Popen(
                [str(venv / "bin" / "python"), "-c", BARE, str(model_path)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=work,
            )
            assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
            time.sleep(2.0)
            return settled_memory({"agent": agent.pid, "bare": bare.pid}, seconds)
        finally:
            if bare is not None:
                bare.kill()
                bare.wait()
            agent.send_signal(signal.SIGTERM)
            agent.wait(15)
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="An agent environment made before.")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--extras", default="agent,agent-tflite", help="Extras to size.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-agent-rss-"))
    sizes: dict[str, tuple[float, list[tuple[str, float]]]] = {}
    venvs: dict[str, Path] = {}
    for extra in args.extras.split(","):
        if extra == "agent" and args.venv:
            venvs[extra] = args.venv
        else:
            venvs[extra] = work / f"venv-{extra}"
            make_venv(venvs[extra], extra)
        sizes[extra] = (du_mb(venvs[extra]), biggest(venvs[extra]))
    if "agent" not in venvs:
        venvs["agent"] = args.venv or work / "venv-agent"
        if not args.venv:
            make_venv(venvs["agent"], "agent")
    memory = idle_memory(venvs["agent"], work / "run", args.idle_seconds)
    report(sizes, memory)


def report(
    sizes: dict[str, tuple[float, list[tuple[str, float]]]],
    memory: dict[str, dict[str, float]],
) -> None:
    print(f"# The device install ({os.uname().machine}, Python {sys.version.split()[0]})\n")
    print("| extra | venv on disk MB | biggest packages (MB) |")
    print("|---|---:|---|")
    for extra, (total, top) in sizes.items():
        named = ", ".join(f"{n} {mb:.0f}" for n, mb in top)
        print(f"| `{extra}` | {total:.0f} | {named} |")
    print("\n| idle, one 10 MB model, API on | edge-agent run | bare onnxruntime | overhead |")
    print("|---|---:|---:|---:|")
    for key, label in (
        ("VmRSS", "RSS MB"),
        ("RssAnon", "of which heap (anonymous) MB"),
        ("RssFile", "of which mapped files (libraries) MB"),
    ):
        a, b = memory["agent"][key], memory["bare"][key]
        print(f"| {label} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    over = memory["agent"]["VmRSS"] - memory["bare"]["VmRSS"]
    verdict = "within" if over <= GOAL_MB else "OVER"
    print(f"\nRSS overhead {over:+.1f} MB: {verdict} the {GOAL_MB:.0f} MB goal")


if __name__ == "__main__":
    main()
