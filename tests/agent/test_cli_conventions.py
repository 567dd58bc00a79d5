"""``edge-agent`` as users of gh or kubectl expect it: ``--version`` and ``version --json``,
completion scripts for bash, zsh and fish (run in the real shells), the config from
``EDGE_AGENT_CONFIG`` or a default path, ``--log-level``; a daemon whose import path carries no
CLI framework or build tooling; and one line naming the extra when a bundle's runtime is not
installed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import agent.cli
from edge_sdk import __version__
from edge_sdk.core.bundle import write_bundle
from edge_sdk.core.wire.topics import Topics
from testing.agents import (
    REPO,
    Operator,
    committed,
    make_bundle,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker
from tests.agent import test_cli

# What a device install does not have, or the daemon must not pay for at run time.
NOT_ON_THE_RUN_PATH = {"typer", "rich", "pydantic", "onnx", "tensorflow", "torch", "sympy"}


invoke = test_cli.invoke


def test_the_running_daemon_imports_no_cli_framework_or_build_tooling(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """The real ``edge-agent run`` under ``-X importtime`` (every import it makes, logged),
    through an update to a model it then serves from onnxruntime."""
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    log = tmp_path / "agent.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "agent",
                "run",
                "--config",
                str(config),
                "--log-level",
                "info",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        operator = Operator(keyring, tmp_path / "repo", broker)
        operator.publish(make_bundle(keyring, 1))
        operator.assign(1)
        wait_for(committed(config, 1), what="the update")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    imported = {
        m.group(1).strip().split(".")[0]
        for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|(.*)$", text, re.MULTILINE)
    }
    assert "onnxruntime" in imported and "agent" in imported  # the log is what we think it is
    assert not imported & NOT_ON_THE_RUN_PATH, sorted(imported & NOT_ON_THE_RUN_PATH)
    assert " INFO " in text  # --log-level info, case-insensitive like the rest of the world


def test_a_bad_log_level_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "run", "--config", "agent.toml", "--log-level", "loud")
    assert code == 2 and err.count("\n") == 1
    assert "DEBUG" in err and "edge-agent run --help" in err


def test_version_flag_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "--version")
    assert code == 0 and out == f"edge-agent {__version__}\n"
    code, out, _ = invoke(capsys, "version", "--json")
    report = json.loads(out)
    assert code == 0 and report["version"] == __version__ and report["command"] == "edge-agent"
    assert report["distribution"] == "edgesdk-fleet"
    assert report["runtimes"]["onnxruntime"]  # this environment has it; read from metadata
    code, out, _ = invoke(capsys, "version")
    assert code == 0 and out.startswith(f"edge-agent {__version__}\nruntimes: onnxruntime ")


def _config(directory: Path, trust_root: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(
        f'device_id = "cam-07"\nprofile = "x86-64"\nstate_dir = "{directory / "state"}"\n'
        f'trust_root = "{trust_root}"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n'
        '[[models]]\nname = "digits"\n'
    )
    return path


def test_config_from_the_environment_then_the_default_path(
    tmp_path: Path,
    keyring: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = tmp_path / "etc" / "edge-agent" / "agent.toml"
    monkeypatch.setattr(agent.cli, "DEFAULT_CONFIG", default)
    monkeypatch.delenv("EDGE_AGENT_CONFIG", raising=False)
    code, _, err = invoke(capsys, "status")
    assert code == 2 and err.count("\n") == 1
    assert str(default) in err and "EDGE_AGENT_CONFIG" in err and "--config" in err

    monkeypatch.setenv("EDGE_AGENT_CONFIG", str(_config(tmp_path / "env", keyring / "root.json")))
    code, out, _ = invoke(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["state_dir"] == str(tmp_path / "env" / "state")

    monkeypatch.delenv("EDGE_AGENT_CONFIG")
    _config(default.parent, keyring / "root.json")
    code, out, _ = invoke(capsys, "status")
    assert code == 0 and out.startswith("device cam-07 ") and "nothing running" in out

    # --config wins over both.
    given = _config(tmp_path / "given", keyring / "root.json")
    monkeypatch.setenv("EDGE_AGENT_CONFIG", str(tmp_path / "nope.toml"))
    code, out, _ = invoke(capsys, "status", "--json", "--config", str(given))
    assert code == 0 and json.loads(out)["state_dir"] == str(tmp_path / "given" / "state")


def _script(shell: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, _ = invoke(capsys, "completion", shell)
    assert code == 0
    path = tmp_path / f"edge-agent.{shell}"
    path.write_text(out)
    return path


BASH_CASES = {
    "edge-agent st": ["status"],
    "edge-agent run --log": ["--log-level"],
    "edge-agent run --log-level W": ["WARNING"],
    "edge-agent completion ": ["bash", "fish", "zsh"],
    "edge-agent selftest --tr": ["--trust-root"],  # the old --trust stays hidden
}


def _bash_words(line: str) -> tuple[str, int]:
    words = line.split(" ")
    return " ".join(f'"{w}"' for w in words), len(words) - 1


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_in_bash_and_zsh(
    shell: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _script(shell, tmp_path, capsys)
    for line, expected in BASH_CASES.items():
        words, index = _bash_words(line)
        call = f"COMP_WORDS=({words}); COMP_CWORD={index}; _edge_agent; "
        call += 'printf "%s\\n" "${COMPREPLY[@]}"'
        if shell == "bash":
            argv = ["bash", "-c", f"source {script}; {call}"]
        else:
            # As zsh's bashcompinit calls a bash completion function: in sh emulation.
            argv = ["zsh", "-f", "-c"]
            argv.append(
                f"autoload -U compinit && compinit -D -u; source {script}; "
                f"t() {{ emulate -L sh; setopt kshglob noshglob braceexpand; {call}; }}; t"
            )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        # bash's compgen filters by the word typed; zsh's emulation leaves that to zsh.
        current = line.rsplit(" ", 1)[1]
        offered = sorted(w for w in done.stdout.split() if w.startswith(current))
        assert offered == expected, (line, done.stdout, done.stderr)


def test_completion_in_fish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = _script("fish", tmp_path, capsys)

    def complete(line: str) -> list[str]:
        done = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return [row.split("\t")[0] for row in done.stdout.splitlines()]

    assert {"run", "status", "selftest", "version", "completion"} <= set(complete("edge-agent "))
    assert complete("edge-agent run --log-level ") == ["DEBUG", "ERROR", "INFO", "WARNING"]
    assert complete("edge-agent completion ") == ["bash", "fish", "zsh"]
    assert "--trust-root" in complete("edge-agent selftest --")


# A device installed with the other runtime's extra: the module is not there to import.
BLOCKED = "import sys\nfor name in {names!r}: sys.modules[name] = None\n"


def test_a_bundle_for_a_runtime_not_installed_is_one_line_naming_the_extra(
    tmp_path: Path, keyring: Path
) -> None:
    bundle = tmp_path / "digits.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    selftest = (
        BLOCKED.format(names=["onnxruntime"])
        + "from agent.cli import run\n"
        + f"sys.exit(run(['selftest', {str(bundle)!r}, '--trust-root', "
        + f"{str(keyring / 'root.json')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", selftest], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "pip install 'edgesdk-fleet[agent]'" in done.stderr


def test_an_agent_without_the_bundles_runtime_refuses_it_naming_the_extra(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """The real daemon on a device installed with [agent-tflite] only, handed an ONNX bundle:
    the update fails before any download, from the signed release record, with one line that
    says what to install."""
    seen: list[dict[str, object]] = []
    watcher = broker.client()
    watcher.on_message = lambda _c, _u, msg: seen.append(json.loads(msg.payload))
    watcher.subscribe(Topics("edge", "default").events("dev-1"), qos=1)
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    daemon = (
        BLOCKED.format(names=["onnxruntime"])
        + "from agent.cli import run\n"
        + f"sys.exit(run(['run', '--config', {str(config)!r}]))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", daemon], cwd=REPO)
    try:
        operator = Operator(keyring, tmp_path / "repo", broker)
        operator.publish(make_bundle(keyring, 1))
        operator.assign(1)
        wait_for(lambda: any(e["event"] == "error" for e in seen), what="refusal")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        watcher.disconnect()
        watcher.loop_stop()
        if process.poll() is None:
            process.kill()
    (refusal,) = [e for e in seen if e["event"] == "error"]
    assert refusal["state"] == "failed"
    assert not any(e["event"] in ("downloaded", "selftest_failed") for e in seen), seen
    reason = str(refusal["reason"])
    assert "\n" not in reason and "pip install 'edgesdk-fleet[agent]'" in reason


def test_a_tflite_bundle_without_a_tflite_runtime_names_the_tflite_extra() -> None:
    load = (
        BLOCKED.format(names=["ai_edge_litert", "tflite_runtime"])
        + "from edge_sdk.errors import UnsupportedError\n"
        + "from edge_sdk.runtime import load\n"
        + "try:\n    load(b'', runtime='tflite', threads=1, inputs=(), outputs=())\n"
        + "except UnsupportedError as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", load], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert "pip install 'edgesdk-fleet[agent-tflite]'" in done.stdout, done.stderr
