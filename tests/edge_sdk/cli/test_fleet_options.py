"""The fleet commands' one set of broker options (edge_sdk.cli._fleet_options) and the shape of
their modules: each command a plain function, put in the group by ``edge_sdk.cli.fleet_cmd``
alone, so no fleet command module imports another."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_sdk.cli import (
    fleet_bench_cmd,
    fleet_cmd,
    fleet_enroll_cmd,
    fleet_publish_cmd,
    fleet_rollout_cmd,
    fleet_status_cmd,
)
from edge_sdk.cli._fleet_options import BROKER_OPTIONS, BrokerOptions, with_broker_options

Cli = Callable[..., tuple[int, str, str]]
MODULES = (
    fleet_bench_cmd,
    fleet_enroll_cmd,
    fleet_publish_cmd,
    fleet_rollout_cmd,
    fleet_status_cmd,
)
SPELLED = ["broker", "ca", "client_cert", "client_key", "fleet", "topic_prefix"]


def test_the_broker_options_are_spelled_out_in_the_parameters_place() -> None:
    seen: list[tuple[str, BrokerOptions, bool]] = []

    def command(name: str, connection: BrokerOptions = BROKER_OPTIONS, json: bool = False) -> None:
        seen.append((name, connection, json))

    spelled = with_broker_options(command)
    assert list(inspect.signature(spelled).parameters) == ["name", *SPELLED, "json"]
    values = dict(zip(SPELLED, ["mqtts://h", Path("ca.pem"), None, None, "f", "p"], strict=True))
    spelled(name="m", json=True, **values)
    assert seen == [("m", BrokerOptions(**values), True)]  # type: ignore[arg-type]


def test_a_command_parameter_may_not_shadow_a_broker_option() -> None:
    def command(fleet: str, connection: BrokerOptions = BROKER_OPTIONS) -> None:
        pass

    with pytest.raises(TypeError, match="shadow the broker options"):
        with_broker_options(command)


def test_the_group_holds_every_fleet_command_in_its_help_order() -> None:
    from edge_sdk.cli._common import new_app

    app = new_app("root")
    fleet_cmd.register(app)
    (group,) = app.registered_groups
    assert group.typer_instance is not None
    names = [c.name for c in group.typer_instance.registered_commands]
    assert names == [
        "publish", "assign", "bench", "enroll", "revoke", "rollout", "rollback", "status"
    ]  # fmt: skip


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_no_fleet_command_module_imports_the_group_or_another_command(module: object) -> None:
    tree = ast.parse(Path(str(getattr(module, "__file__", ""))).read_text())
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {m for m in imported if m.startswith("edge_sdk.cli.fleet")}, imported


@pytest.mark.parametrize(
    "command",
    [("fleet", c) for c in ("publish", "assign", "rollout", "rollback", "status", "bench")]
    + [("build",)],
)
def test_every_fleet_command_takes_the_same_broker_options(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # help: one line per option
    _, out, _ = cli(*command, "--help")
    for flag, env in (("--broker", "EDGE_SDK_BROKER"), ("--ca", "EDGE_SDK_BROKER_CA"),
                      ("--client-cert", "EDGE_SDK_BROKER_CERT"),
                      ("--client-key", "EDGE_SDK_BROKER_KEY"), ("--fleet", "EDGE_SDK_FLEET"),
                      ("--topic-prefix", "EDGE_SDK_TOPIC_PREFIX")):  # fmt: skip
        assert flag in out and f"[env var: {env}]" in out, (command, flag)
    assert "[default: mqtt://127.0.0.1:1883]" in out
