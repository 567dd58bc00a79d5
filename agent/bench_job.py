"""Benchmark jobs on the device: measure the operator's candidates without touching what it serves.

The MQTT thread only queues the job (``on_message``); the daemon's main thread calls ``tick``,
which decides (``judge``, pure), fetches the candidates' chunks into the job's own directory
(checked against the signed hashes, as an update's are), then runs one candidate at a time in
``agent.bench_run``: a child process at the lowest CPU priority, with an address-space limit and
a deadline, never loaded into the serving process, never installed. The answer goes to the
device's own subtree, ``devices/<id>/bench``; the job's directory is removed afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.update.chunk_cache import ChunkCache
from agent.update.release import FileSpec, Release
from agent.update.serials import Verdict
from agent.update.serials import judge as judge_serial
from agent.update.transfer import assemble, chunk_source, fetch_chunks
from edge_sdk.core.wire.bench_job import (
    BenchAnswer,
    BenchJob,
    CandidateResult,
    job_topic,
    result_topic,
    verify_job,
)
from edge_sdk.errors import EdgeSdkError, TransferError

if TYPE_CHECKING:
    from agent.daemon import Agent

log = logging.getLogger(__name__)
SERIAL_SCOPE = "jobs"  # the serial floor's scope prefix: jobs/devices/<id>, model "bench"
SERIAL_MODEL = "bench"
GOLDEN_FILE = "golden.npz"


@dataclass(frozen=True)
class Refusal:
    reason: str


def judge(
    job: BenchJob,
    *,
    device: str,
    profile: str,
    floor: int,
    max_artifact_bytes: int,
    busy: str | None,
) -> Refusal | Verdict:
    """The pure decision on a verified job: a refusal with its reason, or the serial verdict."""
    if job.device != device:
        return Refusal(f"benchmark job {job.job} is for {job.scope}, not devices/{device}")
    verdict = judge_serial(job.serial, floor)
    if verdict is Verdict.REPLAY:
        return Refusal(
            f"replayed benchmark job serial {job.serial} refused: serial {floor} was already "
            "accepted"
        )
    if verdict is Verdict.SEEN:
        return verdict  # the retained copy of a job already taken: nothing to do
    if job.profile != profile:
        return Refusal(f"benchmark job {job.job} is for profile {job.profile}, this is {profile}")
    for c in job.candidates:
        if c.artifact.length > max_artifact_bytes:
            return Refusal(
                f"candidate {c.name} is {c.artifact.length} bytes, over this device's "
                f"max_artifact_bytes ({max_artifact_bytes})"
            )
    if busy is not None:
        return Refusal(f"busy with benchmark job {busy}; publish this one again afterwards")
    return verdict


@dataclass
class _Running:
    job: BenchJob
    directory: Path
    results: list[CandidateResult]
    child: subprocess.Popen[bytes] | None = None
    deadline: float = 0.0


class BenchJobs:
    def __init__(self, agent: Agent, *, slow: Callable[[str], float] = lambda _: 0.0) -> None:
        self.agent = agent
        self.root = agent.config.state_dir / "bench"
        self._inbox: queue.Queue[bytes] = queue.Queue()
        self._running: _Running | None = None
        self._slow = slow  # test hook: extra milliseconds per run for a candidate's precision
        self._threads: int | None = None  # what the last candidate ran with
        self._priority = "nice 19"
        # A job dir left by a crash or power cut: nothing in it is worth keeping.
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def in_flight(self) -> str | None:
        return self._running.job.job if self._running else None

    def subscribe(self) -> None:
        topics, device = self.agent.topics, self.agent.config.device_id
        self.agent.link.subscribe(job_topic(topics, device), self.on_message)

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload:  # an empty retained message clears the topic
            self._inbox.put(payload)

    def tick(self) -> None:
        """Main thread: take queued jobs, then advance the running one."""
        while True:
            try:
                payload = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._take(payload)
        if self._running is not None:
            self._advance(self._running)

    def stop(self) -> None:
        if self._running is not None and self._running.child is not None:
            self._running.child.kill()
            self._running.child.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- taking a job -------------------------------------------------------------------------

    def _take(self, payload: bytes) -> None:
        a = self.agent
        device = a.config.device_id
        try:
            job = verify_job(a.trusted_root(), payload)
        except EdgeSdkError as e:
            self._answer(BenchAnswer("", device, "refused", f"benchmark job refused: {e}"))
            return
        scope = f"{SERIAL_SCOPE}/devices/{device}"
        decision = judge(
            job,
            device=device,
            profile=a.config.profile.id,
            floor=a.serial_floors.floor(scope, SERIAL_MODEL),
            max_artifact_bytes=a.config.limits.max_artifact_bytes,
            busy=self.in_flight,
        )
        if isinstance(decision, Refusal):
            log.warning("%s", decision.reason)
            self._answer(BenchAnswer(job.job, device, "refused", decision.reason))
            return
        if decision is Verdict.SEEN:
            return
        try:
            a.serial_floors.record(scope, SERIAL_MODEL, job.serial)
        except (OSError, EdgeSdkError) as e:
            self._answer(BenchAnswer(job.job, device, "failed", f"cannot record serial: {e}"))
            return
        log.info("benchmark job %s: %d candidates", job.job, len(job.candidates))
        directory = self.root / job.job
        self._running = _Running(job, directory, [])
        self._answer(self._state("accepted"))
        try:
            self._fetch(job, directory)
        except (EdgeSdkError, OSError) as e:
            self._finish("failed", f"fetching the candidates failed: {e}")

    def _fetch(self, job: BenchJob, directory: Path) -> None:
        a = self.agent
        files = [FileSpec(GOLDEN_FILE, job.golden.length, job.golden.sha256, job.golden.chunks)]
        files += [
            FileSpec(f"{c.name}.artifact", c.artifact.length, c.artifact.sha256, c.artifact.chunks)
            for c in job.candidates
        ]
        release = Release("bench", 1, job.profile, job.runtime, tuple(files))
        cache = ChunkCache(directory / "chunks")
        fetch_chunks(release, a.link, a.topics, cache, {}, timeout=a.config.broker.fetch_timeout_s)
        assemble(release, directory, chunk_source(cache, {}))
        shutil.rmtree(directory / "chunks", ignore_errors=True)

    # -- running candidates -------------------------------------------------------------------

    def _advance(self, run: _Running) -> None:
        if run.child is not None:
            if run.child.poll() is None:
                if time.monotonic() < run.deadline:
                    return
                run.child.kill()
                run.child.wait()
                self._collect(run, f"over the job's {run.job.timeout_s:.0f} s per candidate")
            else:
                self._collect(run, None)
            if self._running is None:
                return
        if len(run.results) == len(run.job.candidates):
            self._finish("done", "")
            return
        self._start(run, run.job.candidates[len(run.results)])

    def _start(self, run: _Running, candidate: Any) -> None:
        job = run.job
        work = run.directory / candidate.name
        work.mkdir(parents=True, exist_ok=True)
        task = {
            "artifact": str(run.directory / f"{candidate.name}.artifact"),
            "golden": str(run.directory / GOLDEN_FILE),
            "runtime": job.runtime,
            "settings": dict(candidate.settings),
            "inputs": [t.to_json() for t in job.inputs],
            "outputs": [t.to_json() for t in job.outputs],
            "seconds": job.seconds,
            "max_memory_mb": job.max_memory_mb,
            "slow_ms": self._slow(candidate.precision),
        }
        base = next((c for c in job.candidates if c.name == job.baseline), None)
        if base is not None and base is not candidate:
            task["baseline"] = {
                "artifact": str(run.directory / f"{base.name}.artifact"),
                "settings": dict(base.settings),
            }
        (work / "task.json").write_text(json.dumps(task))
        # The child lowers its own priority and caps its address space before it imports a
        # runtime (agent.bench_run.limit): no preexec_fn in this multi-threaded daemon.
        run.child = subprocess.Popen(
            [sys.executable, "-m", "agent.bench_run", str(work)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": str(candidate.settings.get("threads", 1))},
        )
        run.deadline = time.monotonic() + job.timeout_s

    def _collect(self, run: _Running, timed_out: str | None) -> None:
        candidate = run.job.candidates[len(run.results)]
        result = CandidateResult(candidate.name, error=timed_out)
        path = run.directory / candidate.name / "result.json"
        if timed_out is None:
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                code = run.child.returncode if run.child else None
                doc = {"error": f"the benchmark process ended ({code}) without a result"}
            result = CandidateResult(
                candidate.name,
                load_ms=doc.get("load_ms"),
                latency_ms=doc.get("latency_ms"),
                peak_rss_mb=doc.get("peak_rss_mb"),
                fidelity=doc.get("fidelity"),
                error=doc.get("error"),
                baseline_p50_ms=doc.get("baseline_p50_ms"),
            )
            self._threads = doc.get("threads", self._threads)
            self._priority = doc.get("priority", self._priority)
        run.results.append(result)
        run.child = None
        shutil.rmtree(run.directory / candidate.name, ignore_errors=True)
        if candidate.name != run.job.baseline:  # the baseline runs beside every candidate
            (run.directory / f"{candidate.name}.artifact").unlink(missing_ok=True)
        self._answer(self._state("running"))

    def _finish(self, state: str, reason: str) -> None:
        assert self._running is not None
        answer = replace(self._state(state), reason=reason)
        shutil.rmtree(self._running.directory, ignore_errors=True)
        self._running = None
        log.info("benchmark job %s %s %s", answer.job, state, reason)
        self._answer(answer)

    def _state(self, state: str) -> BenchAnswer:
        run = self._running
        assert run is not None
        return BenchAnswer(
            run.job.job,
            self.agent.config.device_id,
            state,
            done=len(run.results),
            total=len(run.job.candidates),
            results=tuple(run.results),
            runtime=self._runtime(),
        )

    def _runtime(self) -> dict[str, Any]:
        info: dict[str, Any] = {"cores": os.cpu_count() or 1, "priority": self._priority}
        try:
            import onnxruntime

            info["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            pass
        if self._threads is not None:
            info["threads"] = self._threads
        return info

    def _answer(self, answer: BenchAnswer) -> None:
        a = self.agent
        a._dirty = True  # the status names the job in flight: publish it at the next tick
        if not a.link.connected.is_set():
            return  # retained answers: the operator reads the latest state when we return
        try:
            a.link.publish(
                result_topic(a.topics, a.config.device_id), answer.to_bytes(), retain=True
            )
        except TransferError as e:
            log.warning("benchmark answer not sent: %s", e)
