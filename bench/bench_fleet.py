"""Fleet rollout benchmark: N agents (threads in this process) on one Mosquitto, rolled from v1
to a ~5 MB v2 in canary waves, against the raw limit of the same broker for the same N, in one run.

For each N (``--devices 100,300``; ``--quick`` is N=20):

1. Setup (not timed as a result): a fresh plain (non-TLS) broker, N agents in this process
   (group ``bench``, probation 0.2 s, status every 1 s, serving off), all on v1 (the digits model)
   through a group assignment.
2. Publish the ~5 MB v2 and v3 bundles (timed).
3. Rollout of v2 in waves ``1,10%,50%,100%`` (Gate bake 0 s) through the rollout service that
   ``edge-sdk fleet rollout`` calls (edge_sdk.fleet.rollout_service), in-process; then v3 in one
   wave (``100%``), which separates the wave gating from the transfer.
4. Raw limit, agents stopped: the v2 chunk bytes published once (QoS 1, not retained) to N bare
   paho subscribers on a wildcard, and the same chunks read retained (QoS 0, as the agents read
   them) by N subscribers at once.
5. Memory: the broker's RSS without clients, with N agents, and at its peak during the rollouts;
   this process's RSS growth per agent; one agent as its own process holding the 5 MB model.

Times depend on this shared machine; the ratios against the same-script raw baselines are the
result. Run: ``python -m bench.bench_fleet`` (needs the mosquitto binary; ~10 minutes), or
``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agent.daemon
import agent.update.update_state
from agent.daemon import Agent
from agent.sysinfo import release_memory
from agent.update.machine import State
from bench.fleet_meter import (
    TopicMeter,
    UpdateClock,
    WaveTime,
    breakdown_table,
    difference,
    wave_times,
)
from edge_sdk.broker.settings import MAX_QUEUED_MESSAGES
from edge_sdk.core.bundle import Bundle
from edge_sdk.core.wire.topics import Topics
from edge_sdk.fleet.inventory import DeviceView, FleetWatch
from edge_sdk.fleet.publish import assign
from edge_sdk.fleet.rollout import Gate, Phase, Rollout, parse_waves
from edge_sdk.fleet.rollout_service import FleetAccess, RolloutRequest, check_rollout, started
from edge_sdk.fleet.session import BrokerAddress, OperatorLink
from edge_sdk.signing.keys import init_keys
from testing.agents import (
    PROFILE,
    Operator,
    agent_thread,
    committed,
    make_bundle,
    matmul_model,
    start_process,
    write_config,
)
from testing.mosquitto import Broker, connect_client

REPO = Path(__file__).resolve().parent.parent

FEATURES = 256
V2_BYTES = 5 << 20
GROUP = "bench"
MODEL = "digits"
PROBATION_S = 0.2
WAVES = "1,10%,50%,100%"
_TICK = os.sysconf("SC_CLK_TCK")
TOPICS = Topics("edge", "default")


class QuietBroker(Broker):
    """The tests' broker without ``log_type all``: at debug level Mosquitto writes a log line
    for every PUBLISH, SUBSCRIBE and ack, which at hundreds of clients is broker CPU a
    production broker does not spend. "running" (information) is still logged for start-up."""

    def _config(self) -> str:
        quiet = "log_type error\nlog_type warning\nlog_type notice\nlog_type information"
        # $SYS/broker/bytes/{sent,received} every second: the broker's own byte counters; and
        # the per-client queue `broker init` configures (Mosquitto's default, 1000, drops the
        # retained statuses a watcher of thousands of devices is sent at once).
        extra = f"sys_interval 1\nmax_queued_messages {MAX_QUEUED_MESSAGES}\n"
        return super()._config().replace("log_type all", quiet) + extra


# -- process figures --------------------------------------------------------------------------


def status_kb(pid: int | str, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return 0


def rss_mb(pid: int | str = "self") -> float:
    return status_kb(pid, "VmRSS") / 1024


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def thread_count() -> int:
    return status_kb("self", "Threads")


class Sampler:
    """Samples the broker's RSS, this process's RSS and the host's available memory every
    0.25 s in a thread; peaks over any time window are read off afterwards."""

    def __init__(self, broker_pid: int) -> None:
        self._pid = broker_pid
        self._samples: list[tuple[float, float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                sample = (time.monotonic(), rss_mb(self._pid), rss_mb(), mem_available_mb())
                self._samples.append(sample)
            self._stop.wait(0.25)

    def peaks(self, start: float, end: float) -> tuple[float, float, float]:
        """(broker RSS max, this process's RSS max, host MemAvailable min), in MB."""
        window = [s for s in list(self._samples) if start <= s[0] <= end] or self._samples[-1:]
        return (
            max(s[1] for s in window),
            max(s[2] for s in window),
            min(s[3] for s in window),
        )


class Costs:
    """Where the shared interpreter's time goes: every garbage collection (all of them hold the
    GIL), and the agents' ``release_memory`` (gc.collect + malloc_trim after each update), which
    in one process of N agents walks the heap of all N."""

    def __init__(self) -> None:
        self.gc_s = 0.0
        self.gc_runs = 0
        self.full_s = 0.0  # generation 2: the whole heap of every agent in this process
        self.full_runs = 0
        self.release_s = 0.0
        self.release_calls = 0
        self._gc_started = 0.0
        self._lock = threading.Lock()

    def install(self) -> None:
        gc.callbacks.append(self._on_gc)
        original = release_memory

        def timed() -> None:
            start = time.perf_counter()
            original()
            with self._lock:
                self.release_s += time.perf_counter() - start
                self.release_calls += 1

        agent.update.update_state.release_memory = timed  # type: ignore[attr-defined]
        agent.daemon.release_memory = timed  # type: ignore[attr-defined]

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Collections run one at a time, under the GIL: no lock needed here.
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        self.gc_s += took
        self.gc_runs += 1
        if info.get("generation") == 2:
            self.full_s += took
            self.full_runs += 1

    def snapshot(self) -> tuple[float, ...]:
        return (
            self.gc_s,
            self.gc_runs,
            self.full_s,
            self.full_runs,
            self.release_s,
            self.release_calls,
        )


def serialize_ast_parse() -> None:
    """One ``ast.parse`` at a time in this process. numpy reads every .npy header (the golden
    vectors, at each self-test and probation check) with ``ast.literal_eval``, and CPython 3.11's
    AST conversion keeps its recursion depth in per-interpreter state: two threads converting at
    once (one switched out mid-way, e.g. by a GC callback) fail with "SystemError: AST
    constructor recursion depth mismatch", a self-test failure. Hundreds of agents in one
    interpreter hit that; one agent per process, as on a device, hardly can."""
    import ast

    original, lock = ast.parse, threading.Lock()

    def parse(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(*args, **kwargs)

    ast.parse = parse


# -- operator side ----------------------------------------------------------------------------


def operator_link(broker: Broker) -> OperatorLink:
    address = BrokerAddress(broker.host, broker.port, False)
    return OperatorLink(address, f"bench-operator-{time.monotonic_ns()}")


def assign_group(operator: Operator, version: int) -> None:
    with operator_link(operator.broker) as link:
        assign(
            operator.keyring,
            operator.repo_dir,
            link,
            TOPICS,
            model=MODEL,
            version=version,
            scope=f"groups/{GROUP}",
        )


@dataclass
class RolloutResult:
    seconds: float
    waves: list[int]
    wave_s: list[float]  # time from the rollout's start to each wave passing
    phase: str
    reason: str
    devices: list[list[str]] = field(default_factory=list)  # each wave's devices
    published_at: list[float] = field(default_factory=list)  # wall clock: each wave assigned
    passed_at: list[float] = field(default_factory=list)  # wall clock: each wave passed


def run_rollout(operator: Operator, watch: FleetWatch, version: int, waves: str) -> RolloutResult:
    """``edge-sdk fleet rollout digits <version> --group bench --waves ... --probation 0``,
    in-process: the same service calls (``edge_sdk.fleet.rollout_service``) on this process's
    watch, guarded against a broker that died under the rollout."""
    request = RolloutRequest(
        MODEL,
        str(version),
        parse_waves(waves),
        Gate(bake_s=0.0, wave_timeout_s=600.0),
        group=GROUP,
    )
    access = FleetAccess(
        operator.repo_dir,
        operator.keyring,
        TOPICS,
        watch=lambda: contextlib.nullcontext(GuardedFleet(watch, operator.broker)),
        link=lambda: operator_link(operator.broker),
    )
    checked = check_rollout(operator.repo_dir, operator.keyring, request)  # before the clock
    marks: list[float] = []
    published_at: list[float] = []
    passed_at: list[float] = []
    start = time.perf_counter()

    def report(line: str) -> None:
        if line.startswith("wave ") and ": assigning " in line:
            published_at.append(time.time())  # said just before the wave's publish
        if line.startswith("wave ") and " passed: " in line:
            marks.append(time.perf_counter() - start)
            passed_at.append(time.time())

    with started(access, checked) as run:
        planned = run.record
        final: Rollout = run.drive(report=report)
    elapsed = time.perf_counter() - start
    return RolloutResult(
        elapsed,
        [len(w) for w in planned.waves],
        marks,
        str(final.phase),
        final.reason,
        [list(w) for w in planned.waves],
        published_at,
        passed_at,
    )


# -- raw limit --------------------------------------------------------------------------------


def subscribers(broker: Broker, n: int, tag: str) -> list[Any]:
    return [
        connect_client(broker.host, broker.port, None, ca_path=None, client_id=f"raw-{tag}-{i}")
        for i in range(n)
    ]


def close_clients(clients: Sequence[Any]) -> None:
    for c in clients:
        c.disconnect()
    for c in clients:
        c.loop_stop()


class Arrivals:
    """Counts each subscriber's messages under ``prefix``; ``done`` once all have ``expected``."""

    def __init__(self, clients: Sequence[Any], prefix: str, expected: int) -> None:
        self.done = threading.Event()
        self._left = len(clients)
        self._lock = threading.Lock()
        for client in clients:
            client.on_message = self._handler(prefix, expected)

    def _handler(self, prefix: str, expected: int) -> Callable[[Any, Any, Any], None]:
        got = [0]

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            if msg.topic.startswith(prefix):
                got[0] += 1
                if got[0] == expected:
                    with self._lock:
                        self._left -= 1
                        if self._left == 0:
                            self.done.set()

        return on_message


def subscribe_all(clients: Sequence[Any], topic: str, qos: int) -> None:
    """SUBSCRIBE on every client and wait for every SUBACK."""
    acked = threading.Semaphore(0)
    for c in clients:
        c.on_subscribe = lambda *_a: acked.release()
        c.subscribe(topic, qos=qos)
    for _ in clients:
        if not acked.acquire(timeout=30):
            raise TimeoutError("a raw subscriber got no SUBACK")


def raw_fanout(broker: Broker, clients: Sequence[Any], chunks: list[bytes], tag: str) -> float:
    """Seconds from the first PUBLISH (QoS 1, not retained, once) until every subscriber has
    every chunk."""
    prefix = f"bench/fan/{tag}/"
    arrivals = Arrivals(clients, prefix, len(chunks))
    subscribe_all(clients, f"{prefix}#", 1)
    publisher = connect_client(broker.host, broker.port, None, ca_path=None)
    try:
        start = time.perf_counter()
        for i, data in enumerate(chunks):
            publisher.publish(f"{prefix}{i}", data, qos=1, retain=False)
        if not arrivals.done.wait(600):
            raise TimeoutError("raw fan-out did not finish")
        return time.perf_counter() - start
    finally:
        close_clients([publisher])


def raw_retained(broker: Broker, clients: Sequence[Any], chunks: list[bytes], tag: str) -> float:
    """Seconds from N simultaneous SUBSCRIBEs (QoS 0, as the agents read chunks) until every
    subscriber has every retained chunk."""
    prefix = f"bench/ret/{tag}/"
    publisher = connect_client(broker.host, broker.port, None, ca_path=None)
    try:
        infos = [
            publisher.publish(f"{prefix}{i}", data, qos=1, retain=True)
            for i, data in enumerate(chunks)
        ]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        close_clients([publisher])
    arrivals = Arrivals(clients, prefix, len(chunks))
    start = time.perf_counter()
    for c in clients:
        c.subscribe(f"{prefix}#", qos=0)
    if not arrivals.done.wait(600):
        raise TimeoutError("raw retained reads did not finish")
    return time.perf_counter() - start


# -- one agent as its own process ---------------------------------------------------------------


def solo_agent(work: Path, operator: Operator, broker: Broker) -> dict[str, float]:
    """One agent process (as systemd runs it) idle with the 5 MB v2, for reference."""
    config = write_config(
        work / "solo",
        broker,
        operator.keyring / "root.json",
        device="solo-1",
        group="solo",
        probation_s=PROBATION_S,
    )
    proc = start_process(config, work / "solo.log")
    try:
        with operator_link(broker) as link:
            assign(
                operator.keyring,
                operator.repo_dir,
                link,
                TOPICS,
                model=MODEL,
                version=2,
                scope="devices/solo-1",
            )
        wait_until(broker, committed(config, 2), 120, "the solo agent on v2")
        time.sleep(3.0)  # a few idle report cycles
        return {k: status_kb(proc.pid, k) / 1024 for k in ("VmRSS", "RssAnon", "RssFile")} | {
            "Threads": float(status_kb(proc.pid, "Threads"))
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


# -- one N ------------------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    setup_s: float = 0.0
    publish_s: float = 0.0
    publish_bytes: int = 0
    waves: RolloutResult | None = None
    one_wave: RolloutResult | None = None
    raw_fanout_s: float = 0.0
    raw_retained_s: float = 0.0
    chunk_count: int = 0
    chunk_bytes: int = 0
    moved_waves: int = 0
    moved_one: int = 0
    pauses: dict[str, int] = field(default_factory=dict)
    broker_idle_mb: float = 0.0
    broker_agents_mb: float = 0.0
    broker_peak_mb: float = 0.0
    broker_raw_peak_mb: float = 0.0
    proc_before_mb: float = 0.0
    proc_v1_mb: float = 0.0
    proc_v2_mb: float = 0.0
    proc_peak_mb: float = 0.0
    host_min_available_mb: float = 0.0
    threads: int = 0
    idle_cpu_pct: float = 0.0
    cpu: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # wall, self, broker
    costs: dict[str, tuple[float, ...]] = field(default_factory=dict)


def measure(
    work: Path,
    keyring: Path,
    n: int,
    bundles: dict[int, Bundle],
    costs: Costs,
    solo: dict[str, float] | None,
) -> Row:
    row = Row(n)
    broker = QuietBroker(work / "broker")
    operator = Operator(keyring, work / "repo", broker)
    with ExitStack() as stack:
        broker.start()
        stack.callback(broker.close)
        assert broker._proc is not None
        broker_pid = broker._proc.pid
        sampler = stack.enter_context(Sampler(broker_pid))
        time.sleep(0.5)
        row.broker_idle_mb = rss_mb(broker_pid)
        operator.publish(bundles[1])

        release_memory()
        row.proc_before_mb = rss_mb()
        say(f"N={n}: starting agents (process RSS {row.proc_before_mb:.0f} MB)")
        start = time.perf_counter()
        agents: list[Agent] = []
        with ExitStack() as fleet:
            for i in range(n):
                config = write_config(
                    work / "agents" / f"dev-{i:03d}",
                    broker,
                    keyring / "root.json",
                    device=f"dev-{i:03d}",
                    group=GROUP,
                    probation_s=PROBATION_S,
                )
                agents.append(fleet.enter_context(agent_thread(config)))
            # Stop all at once first: each agent's shutdown waits on its broker round trip.
            fleet.callback(lambda: [a.stop() for a in agents])
            assign_group(operator, 1)
            wait_until(broker, lambda: on_version(agents, 1), 600, "all agents on v1")
            row.setup_s = time.perf_counter() - start
            say(f"N={n}: all on v1 after {row.setup_s:.1f} s")
            time.sleep(3.0)
            row.proc_v1_mb = rss_mb()
            row.broker_agents_mb = rss_mb(broker_pid)
            row.threads = thread_count()
            cpu0, t0 = cpu_seconds(), time.monotonic()
            time.sleep(3.0)
            row.idle_cpu_pct = 100 * (cpu_seconds() - cpu0) / (time.monotonic() - t0)

            t0 = time.perf_counter()
            operator.publish(bundles[2])
            row.publish_s = time.perf_counter() - t0
            repository = operator.repository()
            chunks = list(repository.chunks_of(bundles[2]).values())
            row.chunk_count, row.chunk_bytes = len(chunks), sum(len(c) for c in chunks)
            operator.publish(bundles[3])

            watch = fleet.enter_context(
                FleetWatch(
                    BrokerAddress(broker.host, broker.port, False),
                    TOPICS,
                    f"bench-watch-{time.monotonic_ns()}",
                )
            )
            for key, version, waves in (("waves", 2, WAVES), ("one", 3, "100%")):
                pauses0 = sum(a.pauses for a in agents)
                with timed(row, key, broker_pid, costs, sampler):
                    m = bundles[version].manifest
                    result = run_rollout(operator, watch, m.version, waves)
                say(f"N={n}: rollout of v{version} in {waves}: {result.seconds:.1f} s")
                if result.phase != str(Phase.COMPLETED):
                    raise RuntimeError(f"rollout of v{version} {result.phase}: {result.reason}")
                moved = sum(transfer_bytes(a) for a in agents)
                row.pauses[key] = sum(a.pauses for a in agents) - pauses0
                if key == "waves":
                    row.waves, row.moved_waves = result, moved
                else:
                    row.one_wave, row.moved_one = result, moved
            time.sleep(2.0)
            release_memory()
            row.proc_v2_mb = rss_mb()
            row.broker_peak_mb, row.proc_peak_mb, row.host_min_available_mb = sampler.peaks(
                0, time.monotonic()
            )
            say(f"N={n}: stopping agents")
        agents.clear()  # drop the stopped agents' models before the raw phase
        release_memory()

        if solo is not None:
            solo.update(solo_agent(work, operator, broker))

        clients = subscribers(broker, n, str(n))
        try:
            with timed(row, "raw fan-out", broker_pid, costs, sampler):
                row.raw_fanout_s = raw_fanout(broker, clients, chunks, str(n))
            say(f"N={n}: raw fan-out {row.raw_fanout_s:.1f} s")
            with timed(row, "raw retained", broker_pid, costs, sampler):
                row.raw_retained_s = raw_retained(broker, clients, chunks, str(n))
            say(f"N={n}: raw retained reads {row.raw_retained_s:.1f} s")
        finally:
            close_clients(clients)
        row.broker_raw_peak_mb = sampler.peaks(0, time.monotonic())[0]
    shutil.rmtree(work, ignore_errors=True)
    return row


@contextlib.contextmanager
def timed(row: Row, key: str, broker_pid: int, costs: Costs, sampler: Sampler) -> Iterator[None]:
    """Wall time, this process's and the broker's CPU time, and the GC costs of one phase."""
    wall0, self0, broker0 = time.monotonic(), cpu_seconds(), cpu_seconds(broker_pid)
    before = costs.snapshot()
    yield
    row.cpu[key] = (
        time.monotonic() - wall0,
        cpu_seconds() - self0,
        cpu_seconds(broker_pid) - broker0,
    )
    after = costs.snapshot()
    row.costs[key] = tuple(a - b for a, b in zip(after, before, strict=True))


class BrokerGone(RuntimeError):
    pass


def alive(broker: Broker) -> None:
    if not broker.running:
        raise BrokerGone(f"the broker exited mid-run; its log ends:\n{broker.log_tail(5)}")


def wait_until(broker: Broker, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """``wait_for``, but failing at once if the broker is gone."""
    deadline = time.monotonic() + timeout
    while not predicate():
        alive(broker)
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class GuardedFleet:
    """The FleetWatch as ``drive`` sees it, raising instead of waiting out --wave-timeout when
    the broker has died under the rollout."""

    watch: FleetWatch
    broker: Broker

    def sync(self) -> None:
        self.watch.sync()

    def devices(self) -> dict[str, DeviceView]:
        return self.watch.devices()

    def wait_change(self, timeout: float) -> None:
        alive(self.broker)
        self.watch.wait_change(timeout)


def on_version(agents: Sequence[Agent], version: int) -> bool:
    done = True
    for a in agents:
        j = a.updaters[MODEL].journal
        if j.version == version and j.state in (State.FAILED, State.ROLLED_BACK):
            raise RuntimeError(f"{a.config.device_id}: v{version} {j.state}: {j.reason}")
        done = done and j.version == version and j.state is State.COMMITTED
    return done


def transfer_bytes(a: Agent) -> int:
    t = a.updaters[MODEL].last_transfer
    return t.fetched_bytes if t is not None else 0


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# -- report -----------------------------------------------------------------------------------


def report(rows: list[Row], solo: dict[str, float], total_s: float) -> None:
    v2 = rows[0]
    print(
        f"# Fleet rollout (one plain, non-TLS Mosquitto on loopback; N agents as threads in "
        f"one Python process; {os.cpu_count()} CPUs)\n"
    )
    print(
        f"v2 bundle: {v2.chunk_bytes / 1e6:.2f} MB in {v2.chunk_count} chunks; v1 is the digits "
        f"model. Agents: probation {PROBATION_S} s, status every 1 s, serving off. Gate: bake "
        f"0 s. Raw baselines measured on the same broker after the agents stopped.\n"
    )
    print(
        "| N | rollout s (waves 1,10%,50%,100%) | rollout s (one wave) | raw fan-out s "
        "| raw retained s | waves/raw | one wave/raw | waves/one wave | bytes moved (rollout) "
        "| MB/s, all devices: one wave / raw retained |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        assert r.waves is not None and r.one_wave is not None
        raw = r.raw_retained_s
        print(
            f"| {r.n} | {r.waves.seconds:.1f} | {r.one_wave.seconds:.1f} "
            f"| {r.raw_fanout_s:.1f} | {r.raw_retained_s:.1f} "
            f"| {r.waves.seconds / raw:.1f}x | {r.one_wave.seconds / raw:.1f}x "
            f"| {r.waves.seconds / r.one_wave.seconds:.2f}x "
            f"| {r.moved_waves / 1e9:.2f} GB ({r.moved_waves / max(r.n * r.chunk_bytes, 1):.2f}"
            f" x N x bundle) "
            f"| {r.moved_one / 1e6 / r.one_wave.seconds:.0f} "
            f"/ {r.n * r.chunk_bytes / 1e6 / r.raw_retained_s:.0f} |"
        )
    print("\nRatios are against `raw retained` (N subscribers reading the same chunks retained, as")
    print("the agents do). `waves/one wave` is the cost of gating on 4 waves over one.\n")

    print("| N | wave sizes | wave passed at s (from start) | publish v2 s | setup to v1 s |")
    print("|---:|---|---|---:|---:|")
    for r in rows:
        assert r.waves is not None
        marks = ", ".join(f"{s:.1f}" for s in r.waves.wave_s)
        print(
            f"| {r.n} | {' + '.join(map(str, r.waves.waves))} | {marks} | {r.publish_s:.2f} "
            f"| {r.setup_s:.1f} |"
        )

    print(
        "\n| N | broker RSS MB: no clients / N agents idle / peak in rollouts / peak in raw "
        "| agent RSS per device MB (v1 idle / 5 MB v2 idle) | process RSS MB: before / peak "
        "| host MemAvailable min MB | threads | idle CPU % (N agents) |"
    )
    print("|---:|---|---|---|---:|---:|---:|")
    for r in rows:
        per_v1 = (r.proc_v1_mb - r.proc_before_mb) / r.n
        per_v2 = (r.proc_v2_mb - r.proc_before_mb) / r.n
        print(
            f"| {r.n} | {r.broker_idle_mb:.1f} / {r.broker_agents_mb:.1f} / "
            f"{r.broker_peak_mb:.1f} / {r.broker_raw_peak_mb:.1f} "
            f"| {per_v1:.2f} / {per_v2:.2f} | {r.proc_before_mb:.0f} / {r.proc_peak_mb:.0f} "
            f"| {r.host_min_available_mb:.0f} | {r.threads} | {r.idle_cpu_pct:.0f} |"
        )
    if solo:
        print(
            f"\nOne agent as its own process, idle with the 5 MB v2: RSS {solo['VmRSS']:.1f} MB "
            f"(heap {solo['RssAnon']:.1f} MB, mapped files {solo['RssFile']:.1f} MB), "
            f"{solo['Threads']:.0f} threads."
        )

    print(
        "\n| N | phase | wall s | this process CPU s (cores busy) | broker CPU s "
        "| GC s (runs) | of which full GC s (runs) | release_memory s (calls) "
        "| agent fetch pauses |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for key, (wall, own, brk) in r.cpu.items():
            gc_s, gc_runs, full_s, full_runs, rel_s, rel_calls = r.costs[key]
            pauses = r.pauses.get(key, "")
            print(
                f"| {r.n} | {key} | {wall:.1f} | {own:.1f} ({own / wall:.2f}) | {brk:.1f} "
                f"| {gc_s:.1f} ({gc_runs:.0f}) | {full_s:.1f} ({full_runs:.0f}) "
                f"| {rel_s:.1f} ({rel_calls:.0f}) | {pauses} |"
            )
    print(
        "\nGC runs hold the one GIL that all N agents share; a full GC walks every agent's "
        "objects, and each agent runs one per update (release_memory: gc.collect + "
        "malloc_trim), so in one process that cost grows as N x N; on a device each agent has "
        "its own interpreter. release_memory s is the wall time summed over calls (they overlap "
        "and include waiting for the GIL). Agent fetch pauses: updates paused by a transfer "
        "error (a read unanswered within fetch_timeout_s, 5 s here) and resumed after a "
        f"backoff of 1 s or more. Whole run: {total_s / 60:.1f} min."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", action="store_true", help="the fleet-scale run (see SCALE)")
    parser.add_argument("--devices", default="100,300", help="comma-separated fleet sizes")
    parser.add_argument("--quick", action="store_true", help="one small fleet (N=20)")
    args = parser.parse_args()
    sizes = [20] if args.quick else [int(s) for s in args.devices.split(",")]
    run_start = time.perf_counter()
    serialize_ast_parse()
    costs = Costs()
    costs.install()
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        keyring = root / "keys"
        init_keys(keyring, online_keys=1, threshold=1)
        outputs = V2_BYTES // (4 * FEATURES)
        bundles = {
            1: make_bundle(keyring, 1),
            2: make_bundle(keyring, 2, artifact=matmul_model(FEATURES, outputs, seed=2)),
            3: make_bundle(keyring, 3, artifact=matmul_model(FEATURES, outputs, seed=3)),
        }
        solo: dict[str, float] = {}
        rows = []
        for i, n in enumerate(sizes):
            rows.append(
                measure(root / f"n{n}", keyring, n, bundles, costs, solo if i == 0 else None)
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(rows, solo, time.perf_counter() - run_start)


# == fleet scale (``--scale``) ==================================================================
#
# 1. Real agents, the same rollouts (v1 -> v2 in waves 1,10%,50%,100%, then v3 in one wave),
#    chunks once from the broker and once from an HTTP store (nginx serving a ``fleet publish
#    --store file://`` directory named as the release's mirror). --processes of the N agents
#    are real ``edge-agent`` processes, the rest threads in this process. Status sampled every
#    --report-s (the agent's default 60 s), published with news or past --report-max-s (the
#    agent's default 900 s; --report-max-s equal to --report-s: every sample, as before report
#    by exception); a report on every state change regardless.
# 2. Raw limits on the same servers: wrk (C) fetching the same chunk files from the same nginx
#    over N keep-alive connections; N paho subscribers reading the same chunks retained.
# 3. The broker's CPU, peak RSS and bytes (its own $SYS counters) per device update.
# 4. A protocol simulator (a separate process: paho connections each carrying many simulated
#    devices that verify each signed assignment, report downloading then committed after a
#    modelled update time, with the agent's status document) at --simulate sizes, so the
#    rollout controller (this process: FleetWatch, plan, drive, signing) and the broker are
#    measured at 1,000 and 10,000 devices.


def broker_bytes(broker: Broker) -> tuple[int, int]:
    """(received, sent) by the broker so far, from its $SYS counters (published every 1 s).

    Only a live update counts: the retained copy a subscription starts with can be two
    seconds old (Mosquitto checks the interval in whole seconds), which once put most of a
    release published just before into the next rollout's figure."""
    got: dict[str, int] = {}
    done = threading.Event()
    client = connect_client(broker.host, broker.port, None, ca_path=None)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        if msg.retain:
            return
        got[msg.topic.rsplit("/", 1)[-1]] = int(msg.payload)
        if len(got) == 2:
            done.set()

    client.on_message = on_message
    client.subscribe([("$SYS/broker/bytes/received", 0), ("$SYS/broker/bytes/sent", 0)])
    arrived = done.wait(10)
    close_clients([client])
    if not arrived:
        raise RuntimeError("the broker published no $SYS byte counters within 10 s")
    return got["received"], got["sent"]


def publish_release(
    operator: Operator, bundle: Bundle, store: Any | None, mirrors: Sequence[str]
) -> None:
    from edge_sdk.fleet.publish import publish_bundle

    with operator_link(operator.broker) as link:
        publish_bundle(
            bundle, operator.repository(), link, TOPICS, store=store, mirrors=list(mirrors)
        )


def raw_http(url: str, paths: Sequence[str], connections: int, seconds: float) -> float:
    """Bytes per second wrk (C, keep-alive) gets from ``url`` fetching ``paths`` round robin
    over ``connections`` connections for ``seconds``."""
    import subprocess

    script = Path(tempfile.mkdtemp(prefix="wrk-")) / "chunks.lua"
    listed = ", ".join(f'"/{p}"' for p in paths)
    script.write_text(
        f"local paths = {{{listed}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        '  return wrk.format("GET", paths[(i % #paths) + 1])\n'
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("BYTES %d USEC %d ERRORS %d\\n", summary.bytes, '
        "summary.duration, summary.errors.status + summary.errors.read + summary.errors.connect"
        " + summary.errors.timeout))\n"
        "end\n"
    )
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    shutil.rmtree(script.parent, ignore_errors=True)
    line = next(x for x in out.splitlines() if x.startswith("BYTES "))
    _, total, _, usec, _, errors = line.split()
    if int(errors):
        raise RuntimeError(f"wrk saw {errors} errors fetching chunks: {out}")
    return int(total) / (int(usec) / 1e6)


@dataclass
class ScaleRow:
    source: str
    n: int
    processes: int
    chunk_count: int = 0
    chunk_bytes: int = 0
    setup_s: float = 0.0
    waves: RolloutResult | None = None
    one_wave: RolloutResult | None = None
    raw_rate: float = 0.0  # bytes/s over N connections, from the same server
    bytes: dict[str, tuple[int, int]] = field(default_factory=dict)  # phase: received, sent
    broker_cpu: dict[str, float] = field(default_factory=dict)
    broker_peak_mb: float = 0.0
    process_rss_mb: float = 0.0  # one agent process, idle, v1
    process_cpu_pct: float = 0.0
    host_available_mb: float = 0.0
    # phase: (direction, topic class, role) -> (messages, bytes), the in-process clients' share
    topics: dict[str, dict[tuple[str, str, str], tuple[int, int]]] = field(default_factory=dict)
    wave_times: dict[str, list[WaveTime]] = field(default_factory=dict)

    def raw_s(self, devices: int) -> float:
        return devices * self.chunk_bytes / self.raw_rate if self.raw_rate else 0.0

    def product_kb(self, key: str) -> float:
        """The broker's bytes per device update (its $SYS counters, in + out) less what went
        to the benchmark's own observers (the event clock, the $SYS reader)."""
        observers = sum(
            b for (_d, _c, role), (_m, b) in self.topics[key].items() if role == "bench"
        )
        return (sum(self.bytes[key]) - observers) / self.n / 1e3


def measure_scale(
    work: Path,
    keyring: Path,
    n: int,
    processes: int,
    bundles: dict[int, Bundle],
    source: str,
    report_s: float,
    report_max_s: float | None = None,
) -> ScaleRow:
    from edge_sdk.fleet.stores import DirStore
    from testing.agents import start_process
    from testing.nginx import Nginx

    row = ScaleRow(source, n, min(processes, n))
    broker = QuietBroker(work / "broker")
    operator = Operator(keyring, work / "repo", broker)
    with ExitStack() as stack:
        meter = stack.enter_context(TopicMeter().installed())
        broker.start()
        stack.callback(broker.close)
        clock = UpdateClock()
        events = connect_client(broker.host, broker.port, None, ca_path=None)
        events.on_message = clock.on_message
        events.subscribe(TOPICS.events("+"), qos=0)
        stack.callback(close_clients, [events])
        assert broker._proc is not None
        broker_pid = broker._proc.pid
        sampler = stack.enter_context(Sampler(broker_pid))
        store, mirrors, nginx = None, [], None
        if source == "http":
            nginx = Nginx(work / "www", work / "nginx", keepalive_requests=100_000)
            nginx.start()
            stack.callback(nginx.stop)
            store, mirrors = DirStore(f"file://{work / 'www'}", work / "www"), [nginx.url]
        publish_release(operator, bundles[1], store, mirrors)
        row.host_available_mb = mem_available_mb()
        say(f"{source} N={n}: starting {row.processes} agent processes and the rest as threads")
        start = time.perf_counter()
        configs, procs, agents = [], [], []
        with ExitStack() as fleet:
            for i in range(n):
                config = write_config(
                    work / "agents" / f"dev-{i:03d}",
                    broker,
                    keyring / "root.json",
                    device=f"dev-{i:03d}",
                    group=GROUP,
                    probation_s=PROBATION_S,
                )
                report = f"interval_s = {report_s}"
                if report_max_s is not None:
                    report += f"\nmax_interval_s = {report_max_s}"
                if i >= row.processes:
                    # Agents as threads share this process's CPU and memory figures, which
                    # move with the whole benchmark's load and would fire their deadbands: a
                    # real device's agent measures itself alone. Disk free is still per host.
                    report += "\ncpu_deadband = 100000\nmemory_deadband = 1000"
                text = config.read_text().replace("interval_s = 1.0", report)
                config.write_text(text)
                configs.append(config)
                if i < row.processes:
                    proc = start_process(config, config.parent / "agent.log")
                    procs.append(proc)
                    fleet.callback(_stop_process, proc)
                else:
                    agents.append(fleet.enter_context(agent_thread(config)))

            def stop_threads() -> None:
                for a in agents:
                    a.stop()

            def on(version: int) -> Callable[[], bool]:
                return lambda: (
                    on_version(agents, version) and all(committed(c, version)() for c in configs)
                )

            fleet.callback(stop_threads)
            assign_group(operator, 1)
            wait_until(
                broker,
                on(1),
                900,
                "every agent on v1",
            )
            row.setup_s = time.perf_counter() - start
            if procs:
                time.sleep(2.0)
                idle0 = [cpu_seconds(p.pid) for p in procs]
                t0 = time.monotonic()
                time.sleep(3.0)
                wall = time.monotonic() - t0
                used = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, idle0, strict=True))
                row.process_cpu_pct = 100 * used / wall / len(procs)
                row.process_rss_mb = sum(rss_mb(p.pid) for p in procs) / len(procs)
            say(f"{source} N={n}: all on v1 after {row.setup_s:.1f} s")
            publish_release(operator, bundles[2], store, mirrors)
            chunks = operator.repository().chunks_of(bundles[2])
            row.chunk_count, row.chunk_bytes = len(chunks), sum(len(c) for c in chunks.values())
            watch = fleet.enter_context(
                FleetWatch(
                    BrokerAddress(broker.host, broker.port, False),
                    TOPICS,
                    f"bench-watch-{time.monotonic_ns()}",
                )
            )
            for key, version, waves in (("waves", 2, WAVES), ("one", 3, "100%")):
                if version == 3:
                    # Each rollout follows its release's publication, as in use: its devices
                    # then fetch the new metadata (published before the byte count starts).
                    publish_release(operator, bundles[3], store, mirrors)
                before, cpu0 = broker_bytes(broker), cpu_seconds(broker_pid)
                counted = meter.snapshot()
                m = bundles[version].manifest
                result = run_rollout(operator, watch, m.version, waves)
                if result.phase != str(Phase.COMPLETED):
                    raise RuntimeError(f"rollout of v{version} {result.phase}: {result.reason}")
                wait_until(
                    broker,
                    on(version),
                    300,
                    f"every agent on v{version}",
                )
                after = broker_bytes(broker)
                row.topics[key] = difference(meter.snapshot(), counted)
                row.broker_cpu[key] = cpu_seconds(broker_pid) - cpu0
                row.bytes[key] = (after[0] - before[0], after[1] - before[1])
                row.wave_times[key] = wave_times(
                    clock, result.devices, result.published_at, result.passed_at, version
                )
                say(f"{source} N={n}: rollout of v{version} in {waves}: {result.seconds:.1f} s")
                if key == "waves":
                    row.waves = result
                else:
                    row.one_wave = result
            row.broker_peak_mb = sampler.peaks(0, time.monotonic())[0]
        agents.clear()
        release_memory()
        paths = sorted(chunks)
        if nginx is not None:
            row.raw_rate = raw_http(nginx.url, paths, n, 10.0)
        else:
            clients = subscribers(broker, n, f"scale{n}")
            try:
                raw = raw_retained(broker, clients, list(chunks.values()), f"scale{n}")
            finally:
                close_clients(clients)
            row.raw_rate = n * row.chunk_bytes / raw
        say(f"{source} N={n}: raw {row.raw_rate / 1e6:.0f} MB/s")
    shutil.rmtree(work, ignore_errors=True)
    return row


def _stop_process(proc: Any) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except Exception:  # a stuck agent must not keep the benchmark alive
        proc.kill()


# -- the protocol simulator ---------------------------------------------------------------------


def simulator_main(argv: Sequence[str]) -> None:
    """Simulated devices (run as ``bench_fleet.py --simulator ...`` by ``simulate``): each
    connection carries many devices, each verifying its signed assignments as the agent does and
    reporting ``downloading`` then ``committed`` after a modelled update time, with a status
    document of the agent's shape and size."""
    import heapq
    import json
    import random

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_sdk.core.wire.assignment import verify_assignment
    from edge_sdk.signing.keys import load_trust_root

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--keyring", type=Path, required=True)
    parser.add_argument("--update-s", type=float, required=True)
    args = parser.parse_args(list(argv))
    root = load_trust_root(args.keyring / "root.json")
    rng = random.Random(15)
    names = [f"sim-{i:05d}" for i in range(args.devices)]
    version = dict.fromkeys(names, 1)
    due: list[tuple[float, str, int, int, Any]] = []
    wake = threading.Condition()
    per = -(-len(names) // args.connections)

    def status(device: str, v: int, state: str, serial: int, target: int) -> bytes:
        figures = {"count": 0, "errors": 0, "error_rate": 0.0, "p50_ms": 0.0, "p95_ms": 0.0}
        model = {
            "version": v,
            "signed_by_revoked_key": False,
            "trust_note": "",
            "state": state,
            "target_version": target,
            "serial": serial,
            "floor": v,
            "reason": "",
            "last_result": {"result": "installed", "version": v, "reason": "", "at": 0.0},
            "last_transfer": {
                "chunks": 81,
                "fetched": 81,
                "fetched_bytes": 5_330_000,
                "cached": 0,
                "reused": 0,
                "sources": {"http://127.0.0.1:8080/": {"chunks": 81, "bytes": 5_330_000}},
            },
            "inference": figures,
            "probation": None,
        }
        doc = {
            "device": device,
            "fleet": "default",
            "group": GROUP,
            "profile": PROFILE,
            "agent_version": "0.1.0",
            "uptime_s": 100.0,
            "cpu_percent": 0.5,
            "memory_rss_bytes": 107_000_000,
            "disk_free_bytes": 10_000_000_000,
            "assignment_error": "",
            "models": {MODEL: model},
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return json.dumps(doc, sort_keys=True).encode()

    def handler(mine: list[str]) -> Callable[[Any, Any, Any], None]:
        own = set(mine)

        def on_message(client: Any, _u: Any, msg: Any) -> None:
            try:
                a = verify_assignment(root, bytes(msg.payload))
            except Exception:  # a device refuses what does not verify
                return
            kind, _, name = a.scope.partition("/")
            targets = [name] if kind == "devices" and name in own else mine
            if kind == "devices" and name not in own:
                return
            now = time.monotonic()
            for device in targets:
                if version[device] == a.version:
                    continue
                body = status(device, version[device], "downloading", a.serial, a.version)
                client.publish(TOPICS.status(device), body, qos=1, retain=True)
                delay = args.update_s * rng.uniform(0.5, 1.5)
                with wake:
                    heapq.heappush(due, (now + delay, device, a.version, a.serial, client))
                    wake.notify()

        return on_message

    clients = []
    for k in range(args.connections):
        mine = names[k * per : (k + 1) * per]
        if not mine:
            break
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sim-conn-{k}", protocol=mqtt.MQTTv5
        )
        client.max_queued_messages_set(0)
        client.on_message = handler(mine)
        client.connect(HOST_SIM, args.port, keepalive=60)
        client.loop_start()
        topics = [(TOPICS.desired_device(d, MODEL), 1) for d in mine]
        topics.append((TOPICS.desired_group(GROUP, MODEL), 1))
        for start in range(0, len(topics), 100):
            client.subscribe(topics[start : start + 100])
        for device in mine:
            client.publish(TOPICS.presence(device), b'{"online": true}', qos=1, retain=True)
            body = status(device, 1, "committed", 0, 1)
            client.publish(TOPICS.status(device), body, qos=1, retain=True)
        clients.append(client)
    time.sleep(1.0)
    print("ready", flush=True)
    while True:
        with wake:
            while not due or due[0][0] > time.monotonic():
                wake.wait(None if not due else max(0.0, due[0][0] - time.monotonic()))
            _, device, v, serial, client = heapq.heappop(due)
        version[device] = v
        client.publish(
            TOPICS.status(device), status(device, v, "committed", serial, v), qos=1, retain=True
        )


HOST_SIM = "127.0.0.1"


@dataclass
class SimRow:
    n: int
    connections: int
    update_s: float
    waves: RolloutResult | None = None
    controller_cpu_s: float = 0.0
    controller_rss_mb: float = 0.0
    broker_cpu_s: float = 0.0
    broker_idle_mb: float = 0.0
    broker_peak_mb: float = 0.0
    bytes: tuple[int, int] = (0, 0)


def simulate(work: Path, keyring: Path, n: int, update_s: float) -> SimRow:
    import subprocess

    from edge_sdk.signing.repository import Repository

    connections = max(1, min(100, n // 50))
    row = SimRow(n, connections, update_s)
    broker = QuietBroker(work / "broker")
    operator = Operator(keyring, work / "repo", broker)
    # The release is in the repository, as `fleet rollout` checks; simulated devices never
    # fetch it.
    Repository.create(operator.repo_dir, keyring).add_bundle(make_bundle(keyring, 2))
    with ExitStack() as stack:
        broker.start()
        stack.callback(broker.close)
        assert broker._proc is not None
        broker_pid = broker._proc.pid
        sampler = stack.enter_context(Sampler(broker_pid))
        time.sleep(0.5)
        row.broker_idle_mb = rss_mb(broker_pid)
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_fleet",
                "--simulator",
                "--port",
                str(broker.port),
                "--devices",
                str(n),
                "--connections",
                str(connections),
                "--keyring",
                str(keyring),
                "--update-s",
                str(update_s),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        stack.callback(_stop_process, sim)
        assert sim.stdout is not None
        if sim.stdout.readline().strip() != "ready":
            raise RuntimeError("the simulator did not start")
        watch = stack.enter_context(
            FleetWatch(
                BrokerAddress(broker.host, broker.port, False),
                TOPICS,
                f"bench-watch-{time.monotonic_ns()}",
            )
        )
        try:
            wait_until(broker, lambda: len(watch.devices()) >= n, 300, f"{n} simulated devices")
        except TimeoutError as e:
            raise TimeoutError(f"{e}: the watch saw {len(watch.devices())}") from None
        say(f"simulated N={n}: {connections} connections, every device reported")
        before, cpu0, bcpu0 = broker_bytes(broker), cpu_seconds(), cpu_seconds(broker_pid)
        row.waves = run_rollout(operator, watch, 2, WAVES)
        if row.waves.phase != str(Phase.COMPLETED):
            raise RuntimeError(f"simulated rollout {row.waves.phase}: {row.waves.reason}")
        row.controller_cpu_s = cpu_seconds() - cpu0
        row.broker_cpu_s = cpu_seconds(broker_pid) - bcpu0
        after = broker_bytes(broker)
        row.bytes = (after[0] - before[0], after[1] - before[1])
        row.controller_rss_mb = rss_mb()
        row.broker_peak_mb = sampler.peaks(0, time.monotonic())[0]
        say(f"simulated N={n}: rollout {row.waves.seconds:.1f} s")
    shutil.rmtree(work, ignore_errors=True)
    return row


def scale_report(rows: list[ScaleRow], sims: list[SimRow], total_s: float) -> None:
    print(f"# Fleet scale ({os.cpu_count()} CPUs, one plain Mosquitto on loopback)\n")
    if rows:
        r0 = rows[0]
        print(
            f"Release: {r0.chunk_bytes / 1e6:.2f} MB in {r0.chunk_count} chunks. Agents: "
            f"{r0.processes} real `edge-agent` processes + {r0.n - r0.processes} threads in "
            f"the benchmark process; probation {PROBATION_S} s; status on every state change "
            "and, with news, every --report-s. Raw: wrk (C, keep-alive, N connections) from "
            "the same nginx; N paho subscribers reading the same chunks retained from the same "
            "broker.\n"
        )
        print(
            "| chunks from | N | rollout s, waves 1,10%,50%,100% | rollout s, one wave "
            "| raw s (N x release at the raw rate) | one wave / raw | worst wave / its raw "
            "| broker KB per device update (in + out, less the benchmark's observers), waves / "
            "one wave | broker CPU s "
            "(one wave) | broker RSS peak MB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            assert r.waves is not None and r.one_wave is not None
            raw = r.raw_s(r.n)
            worst = 0.0
            previous = 0.0
            for size, mark in zip(r.waves.waves, r.waves.wave_s, strict=False):
                worst = max(worst, (mark - previous) / max(r.raw_s(size), 1e-9))
                previous = mark
            per = {k: r.product_kb(k) for k in r.bytes}
            print(
                f"| {r.source} | {r.n} | {r.waves.seconds:.1f} | {r.one_wave.seconds:.1f} "
                f"| {raw:.1f} | {r.one_wave.seconds / raw:.1f}x | {worst:.1f}x "
                f"| {per['waves']:.1f} / {per['one']:.1f} | {r.broker_cpu['one']:.1f} "
                f"| {r.broker_peak_mb:.0f} |"
            )
        for r in rows:
            for key, title in (("waves", "waves 1,10%,50%,100%"), ("one", "one wave")):
                if key in r.topics:
                    # Agents' rows count only the in-process agents (their clients are in
                    # reach); with none, the watcher's rows still count every device.
                    who = (
                        f"the {r.n - r.processes} in-process agents"
                        if r.processes < r.n
                        else "none"
                    )
                    print()
                    table = breakdown_table(
                        f"{r.source}, N={r.n}, {title} (agents' rows: {who})",
                        r.topics[key],
                        r.n,
                        r.n - r.processes,
                        r.bytes.get(key),
                    )
                    print("\n".join(table))
            for key, title in (("waves", "waves 1,10%,50%,100%"), ("one", "one wave")):
                print(wave_report(f"{r.source}, N={r.n}, {title}", r, r.wave_times.get(key, [])))
        for r in rows:
            if r.process_rss_mb:
                by_mem = r.host_available_mb / r.process_rss_mb
                by_cpu = (os.cpu_count() or 1) * 100 / max(r.process_cpu_pct, 1e-3)
                print(
                    f"\nOne agent process idle on v1 ({r.source} run): RSS {r.process_rss_mb:.0f}"
                    f" MB, CPU {r.process_cpu_pct:.2f}% of a core. This host "
                    f"({r.host_available_mb / 1024:.1f} GB available at the start) holds about "
                    f"{by_mem:.0f} such processes by memory and {by_cpu:.0f} by idle CPU; each "
                    "update costs a process its own interpreter's CPU on top."
                )
                break
    if sims:
        print(
            "\n| simulated devices | connections | rollout s (waves 1,10%,50%,100%) "
            "| controller CPU s | controller CPU ms per device | controller RSS MB "
            "| broker CPU s | broker CPU ms per device | broker RSS MB idle / peak "
            "| broker KB per device update (in + out) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for s in sims:
            assert s.waves is not None
            print(
                f"| {s.n} | {s.connections} | {s.waves.seconds:.1f} | {s.controller_cpu_s:.1f} "
                f"| {1e3 * s.controller_cpu_s / s.n:.2f} | {s.controller_rss_mb:.0f} "
                f"| {s.broker_cpu_s:.1f} | {1e3 * s.broker_cpu_s / s.n:.2f} "
                f"| {s.broker_idle_mb:.0f} / {s.broker_peak_mb:.0f} "
                f"| {sum(s.bytes) / s.n / 1e3:.1f} |"
            )
    print(f"\nWhole run: {total_s / 60:.1f} min.")


def wave_report(title: str, r: ScaleRow, times: Sequence[WaveTime]) -> str:
    """Where each wave's time goes: the mean device's phases (from its own event times), the
    slowest device, and the rest (assignment delivery, reports, the controller's verdict)."""
    lines = [
        f"\n{title}: where the wave time goes (s; phases are the mean device's, from its events)",
        "",
        "| wave | devices | wave s | raw s | transfer | verification | load+self-test "
        "| probation | slowest device | gating (wave - slowest) | wave / raw |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, w in enumerate(times, 1):
        raw = r.raw_s(w.size)
        p = w.phases
        transfer = p["delivery"] + p["transfer"]
        lines.append(
            f"| {i} | {w.size} | {w.wave_s:.1f} | {raw:.2f} | {transfer:.2f} "
            f"| {p['verification']:.2f} | {p['load+self-test'] + p['switch']:.2f} "
            f"| {p['probation']:.2f} | {w.slowest_s:.1f} | {w.gating_s:.1f} "
            f"| {w.wave_s / max(raw, 1e-9):.0f}x |"
        )
    return "\n".join(lines)


def scale_main() -> None:
    parser = argparse.ArgumentParser(description="fleet-scale benchmark")
    parser.add_argument("--scale", action="store_true")
    parser.add_argument("--devices", type=int, default=300, help="real agents per source")
    parser.add_argument("--processes", type=int, default=40, help="of them, real processes")
    parser.add_argument("--sources", default="http,broker", help="http, broker or both")
    parser.add_argument("--simulate", default="1000,10000", help="simulated fleet sizes")
    parser.add_argument("--sim-update-s", type=float, default=2.0, help="modelled update time")
    parser.add_argument("--report-s", type=float, default=60.0, help="agents' status interval")
    parser.add_argument(
        "--report-max-s", type=float, help="agents' report.max_interval_s (default: theirs)"
    )
    parser.add_argument("--quick", action="store_true", help="20 agents (4 processes), 200 sim")
    args = parser.parse_args()
    if args.quick:
        args.devices, args.processes, args.simulate = 20, 4, "200"
    run_start = time.perf_counter()
    serialize_ast_parse()
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rows: list[ScaleRow] = []
    sims: list[SimRow] = []
    try:
        keyring = root / "keys"
        init_keys(keyring, online_keys=1, threshold=1)
        outputs = V2_BYTES // (4 * FEATURES)
        bundles = {
            1: make_bundle(keyring, 1),
            2: make_bundle(keyring, 2, artifact=matmul_model(FEATURES, outputs, seed=2)),
            3: make_bundle(keyring, 3, artifact=matmul_model(FEATURES, outputs, seed=3)),
        }
        for n in [int(x) for x in args.simulate.split(",") if x]:
            sims.append(simulate(root / f"sim{n}", keyring, n, args.sim_update_s))
            scale_report(rows, sims, time.perf_counter() - run_start)  # so far
        for source in [x for x in args.sources.split(",") if x]:
            rows.append(
                measure_scale(
                    root / f"{source}{args.devices}",
                    keyring,
                    args.devices,
                    args.processes,
                    bundles,
                    source,
                    args.report_s,
                    args.report_max_s,
                )
            )
            scale_report(rows, sims, time.perf_counter() - run_start)  # so far
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if "--simulator" in sys.argv:
        simulator_main(sys.argv[sys.argv.index("--simulator") + 1 :])
    elif "--scale" in sys.argv:
        scale_main()
    else:
        main()
