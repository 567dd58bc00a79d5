"""One release with two variants reaching two kinds of hardware in one ``fleet rollout``, on a
real Mosquitto made by ``broker init`` (mutual TLS, the generated ACL): an x86-64 agent and an
arm64-generic one (emulated: an agent configured with that profile, installing that variant's own
ONNX artifact). A third device, whose profile the release has no variant for, is skipped and said
so in the record and the output."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from edge_sdk.fleet.publish import assign
from testing.agents import agent_thread, committed, make_bundle, padded_model, store, wait_for
from testing.fleet_broker import FAST_BROKER_TOML, FAST_EXTRA_TOML, FleetBroker
from tests.edge_sdk.fleet.test_rollout_fleet import Fleet, operator_for

Cli = Callable[..., tuple[int, str, str]]
PROFILES = {"cam-x86": "x86-64", "cam-arm": "arm64-generic", "cam-vnni": "x86-64-vnni"}


def test_a_two_profile_release_reaches_each_device_with_its_own_variant(
    cli: Cli, fleet_broker: FleetBroker, keyring: Path, tmp_path: Path
) -> None:
    operator = operator_for(fleet_broker, keyring, tmp_path / "repo")
    arm_v1, arm_v2 = padded_model(2048, seed=1, doc="arm v1"), padded_model(2048, seed=2)
    operator.publish(make_bundle(keyring, 1, profile="x86-64"))
    operator.publish(make_bundle(keyring, 1, profile="arm64-generic", artifact=arm_v1))
    configs = {
        device: fleet_broker.enroll(
            device,
            group="lobby",
            profile=profile,
            broker_toml=FAST_BROKER_TOML,
            extra_toml=FAST_EXTRA_TOML,
        )
        for device, profile in PROFILES.items()
    }
    fleet = Fleet(fleet_broker, operator, configs)
    with ExitStack() as stack:
        for config in configs.values():
            stack.enter_context(agent_thread(config))
        with operator.link() as link:
            assign(
                keyring,
                operator.repo_dir,
                link,
                operator.topics,
                model="digits",
                version=1,
                scope="groups/lobby",
            )
        for device in ("cam-x86", "cam-arm"):
            wait_for(committed(configs[device], 1), 60, f"{device} on v1")

        x86_v2 = make_bundle(keyring, 2, profile="x86-64")
        operator.publish(x86_v2)
        operator.publish(make_bundle(keyring, 2, profile="arm64-generic", artifact=arm_v2))
        code, out, err = cli(
            "fleet",
            "rollout",
            "digits",
            "2",
            "--group",
            "lobby",
            "--waves",
            "1,100%",
            "--probation",
            "0.2",
            "--wave-timeout",
            "60",
            *fleet.options(),
            "--json",
        )
        assert code == 0, err
        result = json.loads(out)
        assert result["status"] == "completed", result
        assert result["profiles"] == ["arm64-generic", "x86-64"]
        # One wave: "1" is one device of each profile, so the canary tries both variants.
        assert [w["devices"] for w in result["waves"]] == [2]
        assert {d: r["verdict"] for d, r in result["devices"].items()} == {
            "cam-x86": "passed",
            "cam-arm": "passed",
        }
        assert result["skipped"] == {
            "cam-vnni": "profile x86-64-vnni: the release has variants for arm64-generic, x86-64"
        }
        assert "skipping cam-vnni: profile x86-64-vnni" in err
        for device, artifact in (("cam-x86", x86_v2.artifact), ("cam-arm", arm_v2)):
            wait_for(committed(configs[device], 2), 30, f"{device} on v2")
            model = store(configs[device]).version_dir(2) / "model.onnx"
            assert hashlib.sha256(model.read_bytes()).digest() == hashlib.sha256(artifact).digest()
        assert store(configs["cam-vnni"]).current() is None  # never given a variant
    record = json.loads((operator.repo_dir / "rollouts" / "digits.json").read_text())
    assert record["profiles"] == ["arm64-generic", "x86-64"] and "cam-vnni" in record["skipped"]
