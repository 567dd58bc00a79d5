"""``edge-sdk fleet rollout`` against a real fleet: 20 agents, each enrolled with ``fleet enroll``
(its own certificate, agent.toml and state directory), on one Mosquitto running the config
``edge-sdk broker init`` wrote (mutual TLS, the generated ACL).

A good version reaches every device wave by wave (no wave starts before the one before it has
committed); a version that fails its golden vectors on the canary halts in the first wave and
no other device ever downloads it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Agent
from edge_sdk.fleet.publish import assign
from edge_sdk.fleet.session import BrokerAddress, OperatorLink
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    settled,
    store,
    wait_for,
)
from testing.fleet_broker import FAST_BROKER_TOML, FAST_EXTRA_TOML, FleetBroker

Cli = Callable[..., tuple[int, str, str]]
DEVICES = 20


class FleetOperator(Operator):
    """The test operator, connecting with the certificate ``broker init`` issued it."""

    fleet_broker: FleetBroker | None = None

    def link(self) -> OperatorLink:
        assert self.fleet_broker is not None
        b = self.fleet_broker
        cert, key = b.operator_cert
        address = BrokerAddress(b.host, b.operator_port, True, b.ca_path, cert, key)
        return OperatorLink(address, f"operator-{time.monotonic_ns()}")


class Fleet:
    def __init__(
        self,
        broker: FleetBroker,
        operator: Operator,
        configs: dict[str, Path],
        agents: dict[str, Agent] | None = None,
    ) -> None:
        self.broker = broker
        self.operator = operator
        self.configs = configs
        self.agents = agents or {}

    def options(self) -> list[str | Path]:
        cert, key = self.broker.operator_cert
        return [
            "--broker",
            self.broker.operator_url,
            "--ca",
            self.broker.ca_path,
            "--client-cert",
            cert,
            "--client-key",
            key,
            "--repo",
            self.operator.repo_dir,
            "--keys",
            self.operator.keyring,
        ]

    def versions(self) -> dict[str, int | None]:
        return {d: store(c).current() for d, c in self.configs.items()}


def operator_for(fleet_broker: FleetBroker, keyring: Path, repo: Path) -> FleetOperator:
    operator = FleetOperator(keyring, repo, None)  # type: ignore[arg-type]
    operator.fleet_broker = fleet_broker
    return operator


@pytest.fixture()
def fleet(tmp_path: Path, fleet_broker: FleetBroker, keyring: Path) -> Iterator[Fleet]:
    """20 enrolled agents in group ``lobby`` running digits v1, committed, on a broker made by
    ``edge-sdk broker init`` (mutual TLS, the generated ACL)."""
    operator = operator_for(fleet_broker, keyring, tmp_path / "repo")
    operator.publish(make_bundle(keyring, 1))
    configs = {
        f"cam-{i:02d}": fleet_broker.enroll(
            f"cam-{i:02d}",
            group="lobby",
            broker_toml=FAST_BROKER_TOML,
            extra_toml=FAST_EXTRA_TOML,
        )
        for i in range(DEVICES)
    }
    with ExitStack() as stack:
        agents = {d: stack.enter_context(agent_thread(c)) for d, c in configs.items()}
        assert len(agents) == DEVICES
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
        for config in configs.values():
            wait_for(committed(config, 1), 60, "every device on v1")
        yield Fleet(fleet_broker, operator, configs, agents)


def _times(config: Path, event: str) -> list[float]:
    history = store(config).load_journal().history
    return [h["at"] for h in history if h["event"] == event]


def test_a_good_version_rolls_out_in_waves_to_every_device(
    cli: Cli, fleet: Fleet, tmp_path: Path
) -> None:
    fleet.operator.publish(make_bundle(fleet.operator.keyring, 2))
    code, out, err = cli(
        "fleet",
        "rollout",
        "digits",
        "2",
        "--group",
        "lobby",
        "--waves",
        "1,10%,50%,100%",
        "--probation",
        "0.2",
        "--wave-timeout",
        "60",
        *fleet.options(),
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and not result["reason"]
    assert [w["devices"] for w in result["waves"]] == [1, 1, 8, 10]
    assert [w["passed"] for w in result["waves"]] == [1, 1, 8, 10]
    assert set(result["devices"]) == set(fleet.configs)
    assert fleet.versions() == dict.fromkeys(fleet.configs, 2)
    assert "wave 1/4: assigning digits v2 to 1 device(s)" in err
    assert "wave 4 passed" in err

    # Waves are gated: no device of a wave started before the previous wave had committed.
    by_wave: dict[int, list[str]] = {}
    for device, r in result["devices"].items():
        by_wave.setdefault(r["wave"], []).append(device)
    for wave in range(1, 4):
        done = max(_times(fleet.configs[d], "probation_passed")[-1] for d in by_wave[wave - 1])
        began = min(_times(fleet.configs[d], "assigned")[-1] for d in by_wave[wave])
        assert began > done, f"wave {wave + 1} started before wave {wave} committed"

    # The rollout ends with the group's own assignment, for devices that join later.
    record = json.loads((fleet.operator.repo_dir / "rollouts" / "digits.json").read_text())
    assert record["phase"] == "completed" and record["groups"] == ["lobby"]

    # `fleet rollback` with no --to goes back to what the rollout replaced, for the whole group:
    # one signed rollback assignment newer than every wave's.
    code, out, err = cli("fleet", "rollback", "digits", *fleet.options(), "--json")
    assert code == 0, err
    back = json.loads(out)
    assert back["version"] == 1 and back["groups"] == ["lobby"] and back["stopped_rollout"] is None
    for config in fleet.configs.values():
        wait_for(
            lambda c=config: (
                store(c).current() == 1 and store(c).load_journal().state.value == "rolled_back"
            ),
            30,
            "every device back on v1",
        )


def test_offline_devices_are_counted_not_waited_for_and_catch_up_from_their_group(
    cli: Cli, fleet: Fleet
) -> None:
    away = sorted(fleet.configs)[:2]
    for device in away:
        fleet.agents[device].stop()  # a clean stop publishes presence offline, then leaves
    for device in away:
        link = fleet.agents[device].link
        wait_for(lambda link=link: not link.connected.is_set(), 30, f"{device} offline")
    fleet.operator.publish(make_bundle(fleet.operator.keyring, 2))
    code, out, err = cli(
        "fleet", "rollout", "digits", "2", "--probation", "0", *fleet.options(), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and result["offline"] == away
    # Online devices go first: the two offline ones were left for the last wave.
    assert {result["devices"][d]["wave"] for d in away} == {3}
    assert sum(w["passed"] for w in result["waves"]) == DEVICES - 2
    assert all(store(fleet.configs[d]).current() == 1 for d in away)
    # Back online, they take the version from the group assignment the rollout ended with.
    with ExitStack() as stack:
        for device in away:
            stack.enter_context(agent_thread(fleet.configs[device]))
        for device in away:
            wait_for(committed(fleet.configs[device], 2), 60, f"{device} catching up")


def test_a_version_failing_its_golden_vectors_halts_in_the_first_wave(
    cli: Cli, fleet: Fleet
) -> None:
    bad = make_bundle(fleet.operator.keyring, 3, break_golden=True)
    fleet.operator.publish(bad)
    code, out, err = cli(
        "fleet",
        "rollout",
        "digits",
        "3",
        "--probation",
        "0.2",
        "--wave-timeout",
        "60",
        *fleet.options(),
        "--json",
    )
    assert code == 10, err
    result = json.loads(out)
    assert result["status"] == "halted"
    assert "wave 1: 1 of 1 devices failed" in result["reason"]
    assert "golden" in result["reason"] or "selftest" in result["reason"], result["reason"]
    (canary,) = [d for d, r in result["devices"].items() if r["verdict"] == "failed"]
    assert [w["reached"] for w in result["waves"]] == [True, False, False, False]
    record = json.loads((fleet.operator.repo_dir / "rollouts" / "digits.json").read_text())
    assert record["phase"] == "halted"
    # Every device still runs v1, and only the canary ever started on v3.
    assert fleet.versions() == dict.fromkeys(fleet.configs, 1)
    for device, config in fleet.configs.items():
        if device == canary:
            assert _times(config, "selftest_failed")
            # The halt's rollback to the v1 it still serves is acknowledged under its serial.
            wait_for(
                lambda c=config: (
                    store(c).load_journal().serial == record["serial"]
                    and store(c).load_journal().state.value == "committed"
                ),
                30,
                "the canary's acknowledgement of the rollback",
            )
        else:
            journal = store(config).load_journal()
            assert journal.version == 1 and not _times(config, "selftest_failed"), device
        assert 3 not in store(config).installed()


@contextmanager
def rollout_process(
    fleet: Fleet, tmp_path: Path, *options: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``edge-sdk fleet rollout digits 2 OPTIONS`` as its own process (the operator's machine),
    output in ``tmp_path/rollout.log``; killed on the way out if still running."""
    argv = ["fleet", "rollout", "digits", "2", *options, *(str(a) for a in fleet.options())]
    with (tmp_path / "rollout.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from edge_sdk.cli import main; main()", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.kill()
            process.wait()


def record_is(path: Path, check: Callable[[dict[str, Any]], bool]) -> Callable[[], bool]:
    """The rollout record on disk satisfies ``check`` (it is written atomically)."""

    def probe() -> bool:
        try:
            return check(json.loads(path.read_text()))
        except FileNotFoundError:
            return False

    return probe


def test_a_rollout_killed_mid_way_resumes_where_it_stopped(
    cli: Cli, fleet: Fleet, tmp_path: Path
) -> None:
    fleet.operator.publish(make_bundle(fleet.operator.keyring, 2))
    record_path = fleet.operator.repo_dir / "rollouts" / "digits.json"
    with rollout_process(fleet, tmp_path, "--waves", "1,2,50%,100%", "--probation", "1") as p:
        wait_for(
            record_is(record_path, lambda r: r["wave"] == 1 and r["phase"] == "watching"),
            60,
            "the rollout's second wave",
        )
        p.send_signal(signal.SIGKILL)
    killed = json.loads(record_path.read_text())
    assert killed["results"][killed["waves"][0][0]]["verdict"] == "passed"
    untouched = [d for wave in killed["waves"][2:] for d in wave]
    assert all(store(fleet.configs[d]).current() == 1 for d in untouched)

    code, out, err = cli("fleet", "rollout", "digits", "--resume", *fleet.options(), "--json")
    assert code == 0, err
    assert "resuming digits v2: watching, wave 2" in err
    result = json.loads(out)
    assert result["status"] == "completed"
    assert [w["passed"] for w in result["waves"]] == [1, 1, 8, 10]
    assert fleet.versions() == dict.fromkeys(fleet.configs, 2)
    # The resumed run did not start over: the canary took its one assignment, once.
    canary = killed["waves"][0][0]
    assert len(_times(fleet.configs[canary], "assigned")) == 2  # v1, then v2


def test_fleet_rollback_stops_a_rollout_running_elsewhere(
    cli: Cli, fleet: Fleet, tmp_path: Path
) -> None:
    fleet.operator.publish(make_bundle(fleet.operator.keyring, 2))
    record_path = fleet.operator.repo_dir / "rollouts" / "digits.json"
    log_path = tmp_path / "rollout.log"
    with rollout_process(fleet, tmp_path, "--waves", "1,2,50%,100%", "--probation", "30") as p:
        wait_for(
            record_is(record_path, lambda r: r["phase"] == "watching" and r["settled_at"] > 0),
            60,
            "the canary's bake",
        )
        # A second driver is refused while the first runs.
        code, _, err = cli("fleet", "rollout", "digits", "--resume", *fleet.options())
        assert code == 2 and "another `edge-sdk fleet rollout digits` is running" in err
        code, out, err = cli("fleet", "rollback", "digits", *fleet.options(), "--json")
        assert code == 0, err
        assert json.loads(out)["stopped_rollout"] == "2"
        assert p.wait(30) == 10, log_path.read_text()
    assert "stopped: rolled back to v1 by the operator" in log_path.read_text()
    record = json.loads(record_path.read_text())
    assert record["phase"] == "halted" and record["wave"] == 0
    for config in fleet.configs.values():
        wait_for(
            lambda c=config: store(c).current() == 1 and settled(c)(), 30, "all on v1, at rest"
        )
    canary = record["waves"][0][0]
    for device, config in fleet.configs.items():
        if device != canary:
            assert 2 not in store(config).installed(), device


def slow_model(layers: int = 300, width: int = 1024) -> bytes:
    """Takes the digits input, answers slowly: ``layers`` matrix products sharing one weight,
    a version that passes every golden vector and is many times slower than the CNN."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    first = rng.standard_normal((64, width)).astype(np.float32) / 8
    shared = (np.eye(width) + rng.standard_normal((width, width)) / 1000).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["input", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "first"], ["h0"]),
    ]
    nodes += [helper.make_node("MatMul", [f"h{i}", "shared"], [f"h{i + 1}"]) for i in range(layers)]
    nodes.append(helper.make_node("Identity", [f"h{layers}"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])],
        [
            numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(first, "first"),
            numpy_helper.from_array(shared, "shared"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("gate", ["device", "fleet"])
def test_a_version_slower_than_its_incumbent_halts_and_the_canary_is_rolled_back(
    cli: Cli, tmp_path: Path, fleet_broker: FleetBroker, keyring: Path, gate: str
) -> None:
    """``device``: the canary's own probation sees the p95 against the version it replaced,
    rolls itself back, and the rollout halts on that. ``fleet``: the devices' gate is set too
    loose to notice; the fleet's gate, comparing each device's figures for the new version
    against the version it replaced, halts the rollout after the bake and sends the canary
    (already committed) back."""
    import threading

    from edge_sdk.client import InferenceClient
    from testing.agents import SAMPLES

    operator = operator_for(fleet_broker, keyring, tmp_path / "repo")
    operator.publish(make_bundle(keyring, 1))
    operator.publish(make_bundle(keyring, 2, artifact=slow_model()))
    # Serving on a free loopback port; for "fleet", a device-side latency gate too loose to
    # notice, for "device" a window long enough to judge the p95 on.
    device_gate = (
        "seconds = 1.0" if gate == "device" else "seconds = 0.3\nmax_latency_ratio = 100.0"
    )
    serving_toml = FAST_EXTRA_TOML.replace('listen = ""', 'listen = "127.0.0.1:0"').replace(
        "seconds = 0.3", device_gate
    )
    configs = {
        f"cam-{i}": fleet_broker.enroll(
            f"cam-{i}", broker_toml=FAST_BROKER_TOML, extra_toml=serving_toml
        )
        for i in range(3)
    }
    fleet = Fleet(fleet_broker, operator, configs)
    stop = threading.Event()
    with ExitStack() as stack:
        agents = [stack.enter_context(agent_thread(c)) for c in configs.values()]
        for device in configs:
            operator.assign(1, device=device)
        for config in configs.values():
            wait_for(committed(config, 1), 60, "v1 everywhere")
        for agent in agents:
            wait_for(lambda a=agent: bool(a.api_servers) and a.api_servers[0].started)
        urls = [f"http://127.0.0.1:{a.api_servers[0].bound_port}" for a in agents]

        def traffic(url: str) -> None:
            with InferenceClient(url) as client:
                while not stop.is_set():
                    client.predict("digits", {"input": SAMPLES[:1]})

        threads = [threading.Thread(target=traffic, args=(u,), daemon=True) for u in urls]
        for thread in threads:
            thread.start()
        stack.callback(lambda: [t.join(10) for t in threads])
        stack.callback(stop.set)
        # Every device has a baseline before the rollout starts.
        wait_for(lambda: all(a.updaters["digits"].slot.figures().count >= 30 for a in agents), 60)
        code, out, err = cli(
            "fleet",
            "rollout",
            "digits",
            "2",
            "--waves",
            "1,100%",
            "--probation",
            "2",
            "--min-requests",
            "10",
            *fleet.options(),
            "--json",
        )
        assert code == 10, err
        result = json.loads(out)
        assert "latency p95" in result["reason"]
        if gate == "fleet":
            assert "the incumbent's" in result["reason"]
        else:
            assert "rolled_back: " in result["reason"] and "previous version" in result["reason"]
        (canary,) = result["rolled_back"]
        # "fleet": the canary had committed v2; the fleet's rollback takes it back to v1.
        # "device": it rolled itself back to v1 already, and then acknowledges the fleet's
        # rollback of the version it serves (committed under that serial): either way it
        # rests on v1, in whichever of the two states the race between them leaves.
        back = store(configs[canary])
        wait_for(
            lambda: (
                back.current() == 1
                and back.load_journal().state.value in ("rolled_back", "committed")
            ),
            30,
            "the canary back on v1",
        )
        for device, config in configs.items():
            if device != canary:
                assert 2 not in store(config).installed() and store(config).current() == 1
