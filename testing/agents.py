"""What the agent's end-to-end tests share: runnable bundles, an operator that publishes and
assigns through a real broker, agent configs, and agents run in a thread or as a process."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from agent.config import load_config
from agent.daemon import Agent
from agent.failpoints import ENV as FAILPOINTS_ENV
from agent.failpoints import parse_failpoints
from agent.update.store import ModelStore
from edge_sdk.core import golden
from edge_sdk.core.bundle import Bundle, GoldenInfo, Manifest, sha256
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.trust import sign_files
from edge_sdk.core.wire.assignment import Assignment
from edge_sdk.core.wire.topics import Topics
from edge_sdk.fleet.publish import next_serial, publish_assignments, publish_bundle
from edge_sdk.fleet.session import BrokerAddress, OperatorLink
from edge_sdk.signing.keys import load_signer
from edge_sdk.signing.repository import Repository
from testing.mosquitto import Broker

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "examples" / "digits"
PROFILE = "x86-64"


@functools.cache
def _digits_model() -> bytes:
    return (DIGITS / "model.onnx").read_bytes()


def padded_model(extra_bytes: int, seed: int = 0, doc: str = "") -> bytes:
    """The digits model plus an unused initializer of random bytes: a bigger artifact that
    still loads and answers exactly as the original (for size and chunk-reuse tests). ``doc``
    goes into the model's doc_string, which protobuf writes *before* the graph: a change there
    shifts every byte after it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(_digits_model())
    padding = np.random.default_rng(seed).standard_normal(extra_bytes // 4).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(padding, "edge_sdk_test_padding"))
    model.doc_string = doc
    return bytes(model.SerializeToString())


def matmul_model(features: int, outputs: int, seed: int = 0, *, change: int = 0) -> bytes:
    """A one-layer model ``y = x @ W`` whose weights make up its size (4 * features * outputs
    bytes): any artifact size for transfer benchmarks. ``change`` alters that many weights at
    the end, a small retraining whose new version shares most of its bytes with the old."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).standard_normal((features, outputs)).astype(np.float32)
    if change:
        weights.reshape(-1)[-change:] += 1.0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "matmul",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", outputs])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def make_bundle(
    keyring: Path,
    version: int,
    *,
    artifact: bytes | None = None,
    profile: str = PROFILE,
    break_golden: bool = False,
    name: str = "digits",
    signed: bool = True,
) -> Bundle:
    """A real, runnable digits bundle (fp32 ONNX), with golden vectors computed by
    onnxruntime; ``break_golden`` shifts the expected outputs so the device's self-test fails."""
    artifact = _digits_model() if artifact is None else artifact
    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    (input_meta,), (output_meta,) = session.get_inputs(), session.get_outputs()
    sample = tuple(int(d) for d in input_meta.shape[1:])
    if input_meta.name == "input" and sample == (1, 8, 8):
        data = np.load(DIGITS / "validation.npz")["input"][:4].astype(np.float32)
    else:
        data = np.random.default_rng(version).standard_normal((4, *sample)).astype(np.float32)
    inputs = {input_meta.name: data}
    outputs = {output_meta.name: session.run(None, inputs)[0]}
    atol, rtol = golden.tolerance_for("fp32", list(outputs.values()))
    if break_golden:
        outputs = {k: v + 10.0 for k, v in outputs.items()}
    layout = {4: "NCHW", 2: "NC"}
    manifest = Manifest(
        name=name,
        version=version,
        label=f"1.0.{version}",
        profile=profile,
        runtime="onnx",
        precision="fp32",
        artifact="model.onnx",
        artifact_sha256=sha256(artifact),
        artifact_bytes=len(artifact),
        inputs=(
            TensorSpec(input_meta.name, ("batch", *sample), "float32", layout[len(sample) + 1]),
        ),
        outputs=(
            TensorSpec(
                output_meta.name,
                ("batch", *(int(d) for d in output_meta.shape[1:])),
                "float32",
                "NC",
            ),
        ),
        golden=GoldenInfo(4, atol, rtol),
        created="2026-11-25T00:00:00Z",
        runtime_settings={"providers": ["CPUExecutionProvider"]},
    )
    bundle = Bundle(manifest, artifact, golden.pack(inputs, outputs), None, manifest.to_bytes())
    if not signed:
        return bundle
    signatures = sign_files(
        bundle.signed_files(),
        [load_signer(keyring / "online-1.key")],
        expires=datetime.now(UTC) + timedelta(days=30),
        custom=manifest.identity(),
    )
    return bundle.with_signatures(signatures)


@dataclass
class Operator:
    """The fleet operator's side: a repository, a keyring and a broker."""

    keyring: Path
    repo_dir: Path
    broker: Broker
    topics: Topics = field(default_factory=lambda: Topics("edge", "default"))

    def link(self) -> OperatorLink:
        if self.broker.tls:
            cert, key = self.broker.client_cert("operator")
            address = BrokerAddress(
                self.broker.host, self.broker.port, True, self.broker.ca_path, cert, key
            )
        else:
            address = BrokerAddress(self.broker.host, self.broker.port, False)
        return OperatorLink(address, f"operator-{time.monotonic_ns()}")

    def repository(self) -> Repository:
        if (self.repo_dir / "metadata" / "timestamp.json").is_file():
            return Repository.open(self.repo_dir, self.keyring)
        return Repository.create(self.repo_dir, self.keyring)

    def publish(self, bundle: Bundle, *, expires: datetime | None = None) -> None:
        with self.link() as link:
            publish_bundle(bundle, self.repository(), link, self.topics, expires=expires)

    def assign(
        self, version: int, *, device: str = "dev-1", rollback: bool = False, model: str = "digits"
    ) -> Assignment:
        """Signed and published as ``fleet.assign`` does, without its check that the repository
        holds the version: the device's own defences are what these tests try."""
        scope = f"devices/{device}"
        assignment = Assignment(model, version, scope, next_serial(self.repo_dir), rollback)
        with self.link() as link:
            orders = [(scope, version, rollback)]
            serial = assignment.serial
            publish_assignments(
                self.keyring, link, self.topics, model=model, serial=serial, orders=orders
            )
        return assignment

    def raw(self, topic: str, payload: bytes, *, retain: bool = True) -> None:
        with self.link() as link:
            link.publish(topic, payload, retain=retain)


def write_config(
    directory: Path,
    broker: Broker,
    trust_root: Path,
    *,
    device: str = "dev-1",
    probation_s: float = 0.3,
    limits: dict[str, Any] | None = None,
    profile: str = PROFILE,
    max_restarts: int = 3,
    serving: dict[str, Any] | None = None,
    probation: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
    group: str = "default",
) -> Path:
    """An agent.toml for one test device. The inference API is off unless ``serving`` is
    given (``{"listen": "127.0.0.1:0"}`` picks a free port). Faults are not configured here:
    pass failpoints to :func:`agent_thread` or :func:`start_process` (agent.failpoints)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f'device_id = "{device}"',
        f'group = "{group}"',
        f'profile = "{profile}"',
        f'state_dir = "{directory / "state"}"',
        f'trust_root = "{trust_root}"',
        "[broker]",
        f'url = "{broker.url}"',
        "reconnect_min_s = 0.2",
        "reconnect_max_s = 1.0",
        "fetch_timeout_s = 5.0",
    ]
    if broker.tls:
        cert, key = broker.client_cert(device)
        lines += [f'ca = "{broker.ca_path}"', f'cert = "{cert}"', f'key = "{key}"']
    lines += ["[[models]]", 'name = "digits"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in (models or {}).items()]
    lines += ["[probation]", f"seconds = {probation_s}"]
    lines += [f"max_restarts = {max_restarts}", "check_interval_s = 0.1"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in (probation or {}).items()]
    lines += ["[report]", "interval_s = 1.0"]
    lines += ["[serving]", f"listen = {json.dumps((serving or {}).get('listen', ''))}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in (serving or {}).items() if k != "listen"]
    if limits:
        lines.append("[limits]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in limits.items()]
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def store(config_path: Path) -> ModelStore:
    return ModelStore(load_config(config_path).state_dir, "digits")


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


@contextmanager
def agent_thread(config_path: Path, failpoints: str = "") -> Iterator[Agent]:
    """The daemon in this process (fast, exceptions visible); stopped on exit. ``failpoints``
    as ``EDGE_AGENT_FAILPOINTS`` would give them (not read from this process's environment)."""
    agent = Agent(load_config(config_path), failpoints=parse_failpoints(failpoints))
    failure: list[BaseException] = []

    def main() -> None:
        try:
            agent.run()
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(10)
    if failure:
        raise failure[0]


def start_process(config_path: Path, log: Path, failpoints: str = "") -> subprocess.Popen[bytes]:
    """The daemon as a real process, as systemd runs it, with ``failpoints`` (if any) in its
    ``EDGE_AGENT_FAILPOINTS``."""
    handle = log.open("ab")
    env = {k: v for k, v in os.environ.items() if k != FAILPOINTS_ENV}
    if failpoints:
        env[FAILPOINTS_ENV] = failpoints
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config_path), "--verbose"],
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )


def committed(config_path: Path, version: int) -> Callable[[], bool]:
    def check() -> bool:
        s = store(config_path)
        return s.current() == version and s.load_journal().state.value == "committed"

    return check


def settled(config_path: Path) -> Callable[[], bool]:
    """The journal is at rest (no update in flight)."""

    def check() -> bool:
        return store(config_path).load_journal().state.value in (
            "idle",
            "committed",
            "failed",
            "rolled_back",
        )

    return check


def retained_status(broker: Broker, device: str = "dev-1") -> dict[str, Any] | None:
    """The device's retained status message, read as the fleet would."""
    payload = retained_message(broker, Topics("edge", "default").status(device))
    return json.loads(payload) if payload is not None else None


def retained_message(broker: Broker, topic: str) -> bytes | None:
    """The retained payload on ``topic``, or ``None`` when it holds none (after 2 s)."""
    got: list[bytes] = []
    client = broker.client("operator" if broker.tls else None)
    client.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    client.subscribe(topic, qos=1)
    deadline = time.monotonic() + 2.0
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
    return bytes(got[-1]) if got else None


def replace_manifest(bundle: Bundle, **changes: Any) -> Bundle:
    manifest = replace(bundle.manifest, **changes)
    return replace(bundle, manifest=manifest, manifest_bytes=manifest.to_bytes())


SAMPLES = np.load(DIGITS / "validation.npz")["input"][:8].astype(np.float32)


@contextmanager
def serving_v1(
    tmp_path: Path,
    broker: Broker,
    keyring: Path,
    *,
    v1: Bundle | None = None,
    probation: dict[str, Any] | None = None,
    probation_s: float = 0.3,
    models: dict[str, Any] | None = None,
    **serving: Any,
) -> Iterator[tuple[Agent, str, Operator, Path]]:
    """An agent in this process with the inference API on a free loopback port, serving v1."""
    from edge_sdk.client import InferenceClient

    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(v1 or make_bundle(keyring, 1))
    config = write_config(
        tmp_path / "dev",
        broker,
        keyring / "root.json",
        serving={"listen": "127.0.0.1:0", "max_body_bytes": 200_000, **serving},
        probation=probation,
        probation_s=probation_s,
        models=models,
    )
    with agent_thread(config) as agent:
        wait_for(lambda: bool(agent.api_servers) and agent.api_servers[0].started)
        url = f"http://127.0.0.1:{agent.api_servers[0].bound_port}"
        with InferenceClient(url) as client:
            assert not client.ready()  # nothing installed yet
        operator.assign(1)
        wait_for(committed(config, 1))
        yield agent, url, operator, config
