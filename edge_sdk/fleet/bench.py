"""The operator's half of a benchmark job: check the device, send the candidates, sign the job,
wait for the device's figures (edge_sdk.core.wire.bench_job has the wire format, agent.bench_job the
device's half).

Before anything is sent, the device must be known to the broker (a retained status), online
and of the candidates' profile; each of those, a refusal, a failure or the deadline is one
``DeviceBenchError`` line. The candidates travel as retained chunks under ``repo/chunks/``, as a
release's do; those no release on this broker needs are cleared again afterwards.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.wire.bench_job import (
    BenchAnswer,
    BenchCandidate,
    BenchJob,
    Blob,
    job_topic,
    parse_answer,
    result_topic,
    sign_job,
)
from edge_sdk.core.wire.topics import Topics, check_identifier
from edge_sdk.errors import EdgeSdkError, UpdateError
from edge_sdk.fleet.inventory import FleetWatch
from edge_sdk.fleet.session import BrokerAddress, OperatorLink

JOB_LIFETIME = timedelta(hours=1)  # a job not taken by then is void
ANSWER_GRACE_S = 10.0  # beyond the candidates' own time: fetching, process starts


class DeviceBenchError(UpdateError):
    """The device did not measure the candidates: unknown, offline, wrong profile, refused,
    failed or too slow to answer. One line; the host's figures stand."""

    host_figures: list[str] = []  # noqa: RUF012 - set per instance by device_measure


@dataclass(frozen=True)
class Artifact:
    name: str
    precision: str
    settings: Mapping[str, Any]
    data: bytes


@dataclass(frozen=True)
class JobSpec:
    device: str
    profile: str
    runtime: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    golden: bytes  # edge_sdk.core.golden.pack of inputs and the source model's outputs
    artifacts: tuple[Artifact, ...]
    seconds: float = 2.0
    timeout_s: float = 60.0
    max_memory_mb: int = 1024
    baseline: str = ""  # BenchJob.baseline

    @property
    def budget_s(self) -> float:
        """How long the device may take: every candidate's deadline, and some grace."""
        return len(self.artifacts) * self.timeout_s + ANSWER_GRACE_S


def make_job(spec: JobSpec, serial: int) -> tuple[BenchJob, dict[str, bytes]]:
    """The job and the chunks its files are cut into."""
    chunks: dict[str, bytes] = {}
    golden, parts = Blob.of(spec.golden)
    chunks.update(parts)
    candidates = []
    for a in spec.artifacts:
        blob, parts = Blob.of(a.data)
        chunks.update(parts)
        candidates.append(BenchCandidate(a.name, a.precision, dict(a.settings), blob))
    job = BenchJob(
        job=secrets.token_hex(8),
        scope=f"devices/{spec.device}",
        serial=serial,
        profile=spec.profile,
        runtime=spec.runtime,
        candidates=tuple(candidates),
        golden=golden,
        inputs=spec.inputs,
        outputs=spec.outputs,
        seconds=spec.seconds,
        timeout_s=spec.timeout_s,
        max_memory_mb=spec.max_memory_mb,
        baseline=spec.baseline,
    )
    return job, chunks


class BenchWatch(FleetWatch):
    """The fleet's reports, and one device's benchmark answers."""

    def __init__(self, address: BrokerAddress, topics: Topics, client_id: str, device: str):
        super().__init__(address, topics, client_id)
        self._answer_topic = result_topic(topics, device)
        self._answers: list[BenchAnswer] = []
        self._answer_lock = threading.Condition()

    def _on_session(self, client: mqtt.Client) -> None:
        super()._on_session(client)
        client.subscribe(self._answer_topic, 1)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self._answer_topic:
            super()._on_message(c, u, msg)
            return
        try:
            answer = parse_answer(bytes(msg.payload))
        except EdgeSdkError:
            return  # not an answer we can read: the deadline speaks for it
        with self._answer_lock:
            self._answers.append(answer)
            self._answer_lock.notify_all()

    def forget_answers(self) -> None:
        """Drop what arrived so far (after ``sync``: the retained answer to an earlier job)."""
        with self._answer_lock:
            self._answers.clear()

    def next_answer(self, job: str | None, timeout: float) -> BenchAnswer | None:
        """The next answer to ``job`` (or to no job: a refusal of an unreadable one); with
        ``job`` None, the next answer at all."""
        end = time.monotonic() + timeout
        with self._answer_lock:
            while True:
                while self._answers:
                    answer = self._answers.pop(0)
                    if job is None or answer.job in (job, ""):
                        return answer
                left = end - time.monotonic()
                if left <= 0 or not self._answer_lock.wait(left):
                    return None


def check_device(watch: FleetWatch, device: str, profile: str) -> None:
    watch.sync()
    view = watch.devices().get(device)
    if view is None or (view.online is None and not view.at):
        raise DeviceBenchError(
            f"device {device} is unknown to this broker (no status or presence); check the id "
            "with `edge-sdk fleet status`"
        )
    if view.online is not True:
        when = f" (last report {view.at})" if view.at else ""
        raise DeviceBenchError(
            f"device {device} is offline{when}; start its agent, or measure on another device"
        )
    if view.profile and view.profile != profile:
        raise DeviceBenchError(
            f"device {device} runs profile {view.profile}, the candidates are for {profile}; "
            "measure on a device of that profile"
        )


def run_job(
    address: BrokerAddress,
    topics: Topics,
    signers: Sequence[Any],
    spec: JobSpec,
    *,
    serial: int,
    deadline_s: float | None = None,
    keep_chunks: Callable[[str], bool] = lambda _: False,
    progress: Callable[[str], None] = lambda _: None,
    client_id: str = "",
) -> BenchAnswer:
    """Send ``spec`` to its device and return its ``done`` answer, or raise DeviceBenchError."""
    check_identifier(spec.device, "--device")
    job, chunks = make_job(spec, serial)
    deadline_s = deadline_s if deadline_s is not None else spec.budget_s
    who = client_id or f"edge-sdk-bench-{secrets.token_hex(4)}"
    with (
        BenchWatch(address, topics, f"{who}-watch", spec.device) as watch,
        OperatorLink(address, who) as link,
    ):
        check_device(watch, spec.device, spec.profile)
        watch.forget_answers()
        progress(
            f"sending {len(spec.artifacts)} candidates to {spec.device} ({len(chunks)} chunks)"
        )
        for sha, data in chunks.items():
            link.publish(topics.chunk(sha), data)
        link.wait()
        payload = sign_job(job, signers, expires=datetime.now(UTC) + JOB_LIFETIME)
        link.publish(job_topic(topics, spec.device), payload)
        link.wait()
        try:
            return _await(watch, job, deadline_s, progress)
        finally:
            # The job is done with either way: no device should take it again, and chunks
            # that no release needs leave the broker's retained store.
            link.publish(job_topic(topics, spec.device), b"")
            for sha in chunks:
                if not keep_chunks(sha):
                    link.publish(topics.chunk(sha), b"")


def _await(
    watch: BenchWatch, job: BenchJob, deadline_s: float, progress: Callable[[str], None]
) -> BenchAnswer:
    end = time.monotonic() + deadline_s
    device = job.device
    while True:
        left = end - time.monotonic()
        answer = watch.next_answer(job.job, max(0.0, min(left, 5.0)))
        if answer is None:
            if time.monotonic() >= end:
                raise DeviceBenchError(
                    f"device {device} did not finish benchmark job {job.job} within "
                    f"{deadline_s:.0f} s; raise --measure-timeout, or check the device's log"
                )
            view = watch.devices().get(device)
            if view is not None and view.online is False:
                raise DeviceBenchError(f"device {device} went offline during the benchmark job")
            continue
        if answer.state == "refused":
            raise DeviceBenchError(f"device {device} refused the benchmark job: {answer.reason}")
        if answer.state == "failed":
            raise DeviceBenchError(f"benchmark job on {device} failed: {answer.reason}")
        if answer.state == "done":
            return answer
        progress(f"measuring on {device}: {answer.done}/{answer.total} candidates")


def published_chunks(
    repo_dir: Path, address: BrokerAddress, topics: Topics
) -> Callable[[str], bool]:
    """Whether a chunk belongs to a release ``fleet publish`` put on this broker (its ledger in
    the repository): such a chunk stays on the broker when the job's chunks are cleared."""
    from edge_sdk.fleet.publish_ledger import PublishLedger

    scheme = "mqtts" if address.tls else "mqtt"
    ledger = PublishLedger.for_broker(
        repo_dir, f"{scheme}://{address.host}:{address.port}", topics.root
    )
    return lambda sha: sha in ledger


def job_serial() -> int:
    """Job serials only grow: the wall clock in microseconds (under 2**53 until the year 2255).
    A device refuses a job below the highest serial it took."""
    return time.time_ns() // 1000


def load_signers(keyring: Path) -> list[Any]:
    """The online keys that sign targets, as assignments are signed."""
    from edge_sdk.signing.keys import ROOT_JSON, load_trust_root
    from edge_sdk.signing.repository import online_signers

    return list(online_signers(keyring, load_trust_root(keyring / ROOT_JSON).root)["targets"])
