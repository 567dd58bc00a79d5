"""The conventions users know from gh and kubectl, through the real entry point: --version and
`version --json`, `completion` in real shells, placeholders in help, --log-level anywhere, one
spelling per meaning (the old ones still working, with one warning line), and the default
broker said out loud."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest

import edge_sdk
from edge_sdk.core.bundle import write_bundle
from testing.agents import make_bundle
from testing.mosquitto import Broker

Cli = Callable[..., tuple[int, str, str]]
BIN = Path(sys.executable).parent  # where the console scripts are installed


def _shell(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(
        argv, capture_output=True, text=True, env=environment, timeout=120, check=False
    )


# --- version ------------------------------------------------------------------------------------


def test_version_option_and_command(cli: Cli) -> None:
    code, out, err = cli("--version")
    assert code == 0 and err == ""
    assert out.startswith(f"edge-sdk {edge_sdk.__version__} (")
    code, out, _ = cli("version")
    assert code == 0 and out.startswith(f"edge-sdk {edge_sdk.__version__} (")
    code, out, _ = cli("version", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["command"] == "edge-sdk" and info["version"] == edge_sdk.__version__
    # The distribution pip knows, read from the installed metadata (it survives a rename).
    assert info["distribution"] in metadata.packages_distributions()["edge_sdk"]
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))


# --- completion ---------------------------------------------------------------------------------


def test_completion_prints_a_script_per_shell(cli: Cli) -> None:
    for shell, marker in (("bash", "complete -o default -F"), ("zsh", "#compdef edge-sdk")):
        code, out, _ = cli("completion", shell)
        assert code == 0 and marker in out and "_EDGE_SDK_COMPLETE" in out
    code, out, _ = cli("completion", "fish")
    assert code == 0 and out.startswith("complete --command edge-sdk")
    code, out, err = cli("completion", "tcsh")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "bash, zsh, fish" in err


def _bash_complete(words: str) -> list[str]:
    script = (
        "source <(edge-sdk completion bash)\n"
        f"COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
        '_edge_sdk_completion edge-sdk; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = _shell(["bash", "-c", script])
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_and_the_new_option_names() -> None:
    assert _bash_complete("edge-sdk fl") == ["fleet"]
    assert _bash_complete("edge-sdk fleet pu") == ["publish"]
    # The hidden old spellings are not offered; the new ones are.
    assert _bash_complete("edge-sdk fleet publish --client-") == ["--client-cert", "--client-key"]
    assert "--trust-root" in _bash_complete("edge-sdk verify --tr")


def test_fish_completes_with_the_printed_script() -> None:
    done = _shell(["fish", "-c", 'edge-sdk completion fish | source; complete -C "edge-sdk fle"'])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[0] == "fleet"


def test_zsh_loads_the_script_and_gets_candidates() -> None:
    load = "autoload -U compinit; compinit -u; source <(edge-sdk completion zsh); "
    done = _shell(["zsh", "-c", load + "print -r -- ${_comps[edge-sdk]}"])
    assert done.returncode == 0 and done.stdout.strip() == "_edge_sdk_completion", done.stderr
    # What the zsh function evaluates: typer's answer for the words typed so far.
    answer = _shell(
        ["edge-sdk"], _TYPER_COMPLETE_ARGS="edge-sdk bro", _EDGE_SDK_COMPLETE="complete_zsh"
    )
    assert answer.returncode == 0 and "broker" in answer.stdout, answer.stderr


# --- help -----------------------------------------------------------------------------------


def _commands(cli: Cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    code, out, _ = cli(*path, "--help")
    assert code == 0
    yield path
    panel = out.split("─ Commands ─", 1)
    for line in panel[1].splitlines()[1:] if len(panel) == 2 else []:
        name = re.match(r"│ ([a-z][a-z-]+) ", line)
        if name:
            yield from _commands(cli, (*path, name.group(1)))


def test_every_help_shows_placeholders_not_python_types(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one line per option: phrases are not wrapped apart
    python_types = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\])>|list\[")
    seen = list(_commands(cli))
    assert ("fleet", "enroll") in seen and ("keys", "init") in seen
    for path in seen:
        _, out, _ = cli(*path, "--help")
        assert not python_types.search(out), (path, out)
    _, out, _ = cli("fleet", "enroll", "--help")
    assert "DEVICE_ID" in out and "[default: ./DEVICE_ID]" in out  # not eaten as markup
    _, out, _ = cli("build", "--help")
    assert re.search(r"--version +VERSION", out) and re.search(r"--out +DIR", out)


def test_a_bare_group_shows_its_help_and_a_usage_error_points_at_its_own(cli: Cli) -> None:
    code, out, err = cli("fleet")
    assert code == 2 and "publish" in out and err == ""
    code, _, err = cli("fleet", "nope")
    assert code == 2 and err == "error: No such command 'nope'. (see edge-sdk fleet --help)\n"


# --- log level ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "level"),
    [
        (("--log-level", "info", "profiles", "list"), None, logging.INFO),
        (("profiles", "list", "--log-level", "DEBUG"), None, logging.DEBUG),
        (("profiles", "list"), "warning", logging.WARNING),
        (("profiles", "list"), None, logging.ERROR),
    ],
)
def test_log_level_before_or_after_the_command_or_from_the_environment(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], env: str | None, level: int
) -> None:
    if env is None:
        monkeypatch.delenv("EDGE_SDK_LOG", raising=False)
    else:
        monkeypatch.setenv("EDGE_SDK_LOG", env)
    code, _, err = cli(*argv)
    assert code == 0, err
    assert logging.getLogger().level == level


def test_an_unknown_log_level_is_one_line(cli: Cli) -> None:
    code, _, err = cli("--log-level", "loud", "profiles", "list")
    assert code == 2 and err.count("\n") == 1 and "debug, info, warning, error" in err


# --- one spelling per meaning -----------------------------------------------------------------


def test_verify_takes_trust_root_and_still_the_old_trust(
    cli: Cli, digits_build: dict[str, object], signing_keys: Path
) -> None:
    bundle, root = str(digits_build["bundle"]), signing_keys / "root.json"
    code, out, err = cli("verify", bundle, "--trust-root", root, "--json")
    assert code == 0 and err == ""
    new = json.loads(out)
    code, out, err = cli("verify", bundle, "--trust", root, "--json")
    assert code == 0 and json.loads(out) == new
    assert err == "warning: --trust is deprecated; use --trust-root\n"
    _, out, _ = cli("verify", "--help")
    assert "--trust-root" in out and not re.search(r"--trust\b(?!-)", out)


def test_fleet_tls_options_are_client_cert_and_key_the_old_ones_still_work(
    cli: Cli, tmp_path: Path, tls_broker: Broker, keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # help: one line per option
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    cert, key = tls_broker.client_cert("operator")
    common = ("--repo", tmp_path / "repo", "--keys", keyring, "--broker", tls_broker.url)
    code, _, err = cli(
        "fleet", "publish", bundle, *common, "--ca", tls_broker.ca_path, "--cert", cert,
        "--key", key, "--json",
    )  # fmt: skip
    assert code == 0, err
    assert err.splitlines() == [
        "warning: --cert is deprecated; use --client-cert",
        "warning: --key is deprecated; use --client-key",
    ]
    # The old spelling beats the environment, as the new one does.
    monkeypatch.setenv("EDGE_SDK_BROKER_KEY", str(tmp_path / "no-such.key"))
    code, _, err = cli(
        "fleet", "status", "--broker", tls_broker.url, "--ca", tls_broker.ca_path,
        "--client-cert", cert, "--key", key, "--broker-dir", tmp_path / "none", "--json",
    )  # fmt: skip
    assert code == 0, err
    monkeypatch.delenv("EDGE_SDK_BROKER_KEY")
    _, out, _ = cli("fleet", "publish", "--help")
    assert "--client-key" in out and not re.search(r"--key\b", out)
    # In `build`, --key is the signing key: no alias there.
    _, out, _ = cli("build", "--help")
    assert re.search(r"--key +PATH +Online signing key", out)


# --- the broker the fleet commands talk to -----------------------------------------------------


def test_the_default_broker_is_said_out_loud(
    cli: Cli, tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_SDK_BROKER", raising=False)
    nowhere = ("--broker-dir", tmp_path / "none")
    # Whatever answers on 127.0.0.1:1883 (nothing, or a system Mosquitto): the warning comes first.
    _, _, err = cli("fleet", "status", *nowhere, "--json")
    first = err.splitlines()[0]
    assert first.startswith("warning: no --broker or EDGE_SDK_BROKER given")
    assert "mqtt://127.0.0.1:1883" in first and "broker init" in first
    code, _, err = cli("fleet", "status", *nowhere, "--broker", broker.url, "--json")
    assert code == 0 and err == ""
    monkeypatch.setenv("EDGE_SDK_BROKER", broker.url)
    code, _, err = cli("fleet", "status", *nowhere, "--json")
    assert code == 0 and err == ""
    # Bad input stops before any connection: its one line is all there is.
    monkeypatch.delenv("EDGE_SDK_BROKER")
    code, _, err = cli("fleet", "status", *nowhere, "--device", "a/b")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")


def test_broker_init_export_line_points_at_the_repo_and_keyring(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGE_SDK_REPO", raising=False)
    monkeypatch.delenv("EDGE_SDK_KEYS", raising=False)
    code, out, err = cli("broker", "init", "b", "--run-as", getpass.getuser(), "--json")
    assert code == 0, err
    line = json.loads(out)["export"]
    assert f"EDGE_SDK_REPO={tmp_path / 'fleet-repo'}" in line
    assert f"EDGE_SDK_KEYS={tmp_path / 'keys'}" in line
    code, out, err = cli(
        "broker", "init", "b2", "--run-as", getpass.getuser(), "--repo", "r", "--keys", "k"
    )
    assert code == 0, err
    shown = next(x for x in out.splitlines() if x.startswith("operator:"))
    assert f"EDGE_SDK_REPO={tmp_path / 'r'} EDGE_SDK_KEYS={tmp_path / 'k'}" in shown
