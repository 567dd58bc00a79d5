"""``edge-sdk fleet``: the group that operates the fleet over MQTT. Each of its commands lives in
a module of its own, defines a plain function and imports nothing from here; ``register`` is
the one place that puts them in the group (in the order ``fleet --help`` lists them)."""

from __future__ import annotations

import typer

from edge_sdk.cli._common import new_app


def register(app: typer.Typer) -> None:
    from edge_sdk.cli import (
        fleet_bench_cmd,
        fleet_enroll_cmd,
        fleet_publish_cmd,
        fleet_rollout_cmd,
        fleet_status_cmd,
    )

    fleet_app = new_app("Operate the fleet: publish bundles and assign versions over MQTT.")
    fleet_app.command("publish")(fleet_publish_cmd.publish_command)
    fleet_app.command("assign")(fleet_publish_cmd.assign_command)
    fleet_app.command("bench")(fleet_bench_cmd.bench_command)
    fleet_app.command("enroll")(fleet_enroll_cmd.enroll_command)
    fleet_app.command("revoke")(fleet_enroll_cmd.revoke_command)
    fleet_app.command("rollout")(fleet_rollout_cmd.rollout_command)
    fleet_app.command("rollback")(fleet_rollout_cmd.rollback_command)
    fleet_app.command("status")(fleet_status_cmd.status_command)
    app.add_typer(fleet_app, name="fleet")
