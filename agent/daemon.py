"""``edge-agent run``: the long-running daemon that wires the pieces together.

One main thread owns all decisions and every write to the state directory; the MQTT network
thread only hands messages over through a queue. On start the agent recovers each model from
its journal and serves ``current`` before it even connects, so a device with no broker still
runs its model.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping

from agent.bench_job import BenchJobs
from agent.config import AgentConfig
from agent.failpoints import OFF, Failpoints
from agent.metrics import Metrics
from agent.mqtt_link import MqttLink, Will
from agent.report_policy import Deadband, publish_reason
from agent.reports import count_event, count_serving, event_payload, status_document
from agent.serving.front_ends import FrontEnds
from agent.sysinfo import CpuMeter, release_memory
from agent.update.chunk_cache import ChunkCache, ChunkRef
from agent.update.machine import Event, Journal, Resume, State
from agent.update.release import Release
from agent.update.serials import SerialFloors, Verdict, judge
from agent.update.store import ModelStore
from agent.update.transfer import TransferStats, fetch_release
from agent.update.tuf_mqtt import TufSession
from agent.update.updater import ModelUpdater
from edge_sdk.core.bundle import format_version
from edge_sdk.core.text import one_line
from edge_sdk.core.trust import TrustRoot
from edge_sdk.core.trust.root_file import load_trust_root
from edge_sdk.core.wire.assignment import Assignment, verify_assignment
from edge_sdk.core.wire.protocol import StatusDocument, presence_payload
from edge_sdk.core.wire.topics import Topics
from edge_sdk.errors import (
    EdgeSdkError,
    OutputError,
    ThresholdError,
    TransferError,
    UnknownKeyError,
)

log = logging.getLogger(__name__)
_PACKET_OVERHEAD = 4096  # MQTT headers and properties on top of a chunk or metadata file
_TICK_S = 0.2
_RETRY_MIN_S, _RETRY_MAX_S = 1.0, 60.0
_ROOT_REFRESH_MIN_S = 30.0  # between refreshes caused by an assignment from an unknown key


class _RootRefreshDue(Exception):
    """An assignment from a key we do not know, while the root was refreshed only moments ago:
    it waits for the next refresh (the latest per topic), neither trusted nor refused."""


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        failpoints: Failpoints = OFF,
    ) -> None:
        self.config = config
        self.failpoints = failpoints  # faults a test injects (agent.failpoints); off in use
        self._clock = clock
        self.topics = Topics(config.broker.topic_prefix, config.fleet)
        # The pinned root is checked now, not when the first update arrives: a public key, a
        # targets file, an empty file or a FIFO there is one line and exit 2 at start.
        load_trust_root(config.trust_root)
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.tuf_dir = config.state_dir / "tuf"
        self.cache = ChunkCache(
            config.state_dir / "chunks", failpoints.disk_full_after_bytes or None
        )
        self.updaters = {
            m.name: ModelUpdater(self, m, ModelStore(config.state_dir, m.name))
            for m in config.models
        }
        self._inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._started = clock()
        self._cpu = CpuMeter()
        self._desired: dict[str, Assignment] = {}
        # Assignments waiting for the broker, or for the next root refresh: the latest per
        # desired topic of a model we manage, so however much anyone publishes, this is bounded.
        self._deferred: dict[str, bytes] = {}
        self._awaiting_root: dict[str, bytes] = {}
        self._seen_serial: dict[str, int] = {}  # per desired topic: taken in this run
        # Replay defence across restarts: the highest serial accepted, on disk.
        self.serial_floors = SerialFloors(
            config.state_dir, {name: u.journal.serial for name, u in self.updaters.items()}
        )
        self._retry_at = 0.0
        self._root_refreshed_at = float("-inf")
        self._retry_delay = _RETRY_MIN_S
        self._status_due = 0.0  # the next sample of the status (report.interval_s)
        self._probation_due = 0.0
        self._dirty = True  # something happened: publish at the next tick, whatever it says
        # The status last published, when, and on which connection (report by exception).
        self._reported: StatusDocument | None = None
        self._reported_at = 0.0
        self._reported_on = 0
        r = config.report
        self._deadband = Deadband(r.cpu_deadband, r.memory_deadband, r.disk_deadband)
        # CPU use over the last sampling interval; a report between samples repeats it, so a
        # burst (an update) is averaged over the interval, not shown over its own second and
        # corrected at the next sample. None: not read yet.
        self._cpu_sampled: float | None = None
        self.assignment_error = self.serial_floors.problem
        self.pauses = 0  # updates paused for want of the broker (resumed later)
        self.metrics = Metrics()
        self.front_ends = FrontEnds(
            config, {name: u.slot for name, u in self.updaters.items()}, self.metrics
        )
        # The same lists, filled by front_ends.start(): where callers find the bound ports.
        self.api_servers, self.grpc_servers = self.front_ends.http, self.front_ends.grpc
        hooks = failpoints
        self.bench = BenchJobs(
            self,
            slow=lambda p: hooks.bench_slow_ms if p == hooks.bench_slow_precision else 0.0,
        )
        limits = config.limits
        device = config.device_id
        self.link = MqttLink(
            config.broker,
            client_id=device,
            will=Will(self.topics.presence(device), presence_payload(False)),
            online=Will(self.topics.presence(device), presence_payload(True)),
            max_packet_bytes=max(limits.max_chunk_bytes, limits.max_metadata_bytes)
            + _PACKET_OVERHEAD,
        )

    # -- Environment for the updaters -------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def tuf_session(self) -> TufSession:
        return TufSession(
            self.tuf_dir,
            self.config.trust_root,
            self.link,
            self.topics.metadata,
            timeout=self.config.broker.fetch_timeout_s,
            max_metadata_bytes=self.config.limits.max_metadata_bytes,
        )

    def trusted_root(self) -> TrustRoot:
        cached = self.tuf_dir / "root.json"
        if cached.exists():
            return TrustRoot.from_bytes(cached.read_bytes(), str(cached))
        return load_trust_root(self.config.trust_root)

    def fetch(
        self, release: Release, local: Mapping[str, ChunkRef], on_chunk: Callable[[int], None]
    ) -> TransferStats:
        return fetch_release(
            release,
            self.link,
            self.topics,
            self.cache,
            local,
            timeout=self.config.broker.fetch_timeout_s,
            http=self.config.store,
            on_chunk=on_chunk,
        )

    def local_chunks(self) -> dict[str, ChunkRef]:
        found: dict[str, ChunkRef] = {}
        for updater in self.updaters.values():
            found.update(updater.store.local_chunks())
        return found

    def event(self, model: str, journal: Journal, event: Event) -> None:
        self._dirty = True
        payload = event_payload(self.config.device_id, model, journal, event, self.now())
        label = "" if journal.version is None else f" {format_version(journal.version)}"
        log.info("%s%s: %s -> %s %s", model, label, event, journal.state, journal.reason)
        count_event(self.metrics, model, journal, event)
        if self.link.connected.is_set():
            self.link.publish(self.topics.events(self.config.device_id), payload)

    def crash_point(self, name: str) -> None:
        """Fault injection for the power-cut tests: die here, as a power cut would."""
        if name and name == self.failpoints.crash_at:
            log.warning("test crash point %s: SIGKILL", name)
            os.kill(os.getpid(), signal.SIGKILL)

    # -- main loop --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

    def run(self) -> None:
        for updater in self.updaters.values():
            action = updater.recover()
            if action in (Resume.DOWNLOAD, Resume.VERIFY):
                updater.load_current()  # serve the old version; the update resumes once online
            else:
                updater.resume(action)
        release_memory()  # loading and checking the models left freed heap behind
        self.front_ends.start()
        device, group = self.config.device_id, self.config.group
        for topic_filter in self.topics.desired_filters(device, group):
            self.link.subscribe(topic_filter, self._on_desired)
        self.bench.subscribe()
        self.link.start()
        try:
            while not self._stop.is_set():
                self._drain_inbox()
                if self.link.connected.is_set() and self.now() >= self._retry_at:
                    self._work()
                self._tick()
                self.bench.tick()
                self._wakeup.wait(_TICK_S)
                self._wakeup.clear()
        finally:
            self.bench.stop()
            self._publish_status()
            self.link.stop()
            self.front_ends.stop()

    def _on_desired(self, topic: str, payload: bytes, retained: bool) -> None:
        # Network thread: hand over, decide later. A message with the retain flag is the copy
        # a subscription gets; one without it was published while we listened (or queued in
        # our session while we were away): the operator sending it now.
        self._inbox.put((topic, payload, not retained))
        self._wakeup.set()

    def _drain_inbox(self) -> None:
        while True:
            try:
                topic, payload, live = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._take_assignment(topic, payload, live=live)

    def _take_assignment(self, topic: str, payload: bytes, *, live: bool = False) -> None:
        """``_accept_assignment`` behind a last-resort guard: a retained message is delivered
        again at every start, so one that raised here would end the daemon on every restart
        and the device would serve nothing. Nothing a remote party sends may do that."""
        try:
            self._accept_assignment(topic, payload, live=live)
        except Exception as e:  # the guard itself; the trace goes to the log
            log.exception("unexpected error handling the assignment on %s", topic)
            reason = one_line(f"{type(e).__name__}: {e}")
            self._refused_assignment(topic, f"assignment on {topic} refused: {reason}")

    def _accept_assignment(self, topic: str, payload: bytes, *, live: bool = False) -> None:
        scope = self.topics.desired_scope(topic)
        if scope is None or not payload or scope[1] not in self.updaters:
            return  # not a desired-state topic of a model this device manages
        try:
            assignment = self._verify(payload)
        except _RootRefreshDue:
            self._awaiting_root[topic] = payload  # checked again after the next refresh
            return
        except TransferError as e:
            self.assignment_error = str(e)
            self._deferred[topic] = payload  # verified again once the broker is back
            self._back_off()
            return
        except EdgeSdkError as e:
            self._refused_assignment(topic, f"assignment on {topic} refused: {e}")
            return
        expected_scope, model = scope
        if assignment.scope != expected_scope or assignment.model != model:
            self._refused_assignment(
                topic, f"assignment for {assignment.scope}/{assignment.model} arrived on {topic}"
            )
            return
        if model not in self.updaters:
            return  # a model this device does not manage
        floor = self.serial_floors.floor(expected_scope, model)
        verdict = judge(assignment.serial, floor)
        if verdict is Verdict.REPLAY:
            self._refused_assignment(
                topic,
                f"replayed assignment serial {assignment.serial} on {topic} refused: serial "
                f"{floor} was already accepted for {expected_scope}/{model}",
            )
            return
        if verdict is Verdict.SEEN and live:
            # The same assignment published again by the operator (not the retained copy a
            # subscription gets): a retry of an update of it that failed, from the chunks held.
            self.updaters[model].retry_requested = assignment.serial
        if assignment.serial <= self._seen_serial.get(topic, 0):
            return  # taken already in this run (the broker delivered it again)
        if verdict is Verdict.NEW:
            try:
                self.serial_floors.record(expected_scope, model, assignment.serial)
            except (OSError, OutputError) as e:
                # Not acted on unless recorded; kept, and tried again with the broker work.
                self.assignment_error = (
                    f"cannot record assignment serial in {self.serial_floors.path}: "
                    f"{getattr(e, 'strerror', None) or e}; will retry"
                )
                log.warning("%s", self.assignment_error)
                self._dirty = True
                self._deferred[topic] = payload
                self._back_off()
                return
        # SEEN: the retained copy of the assignment accepted before a restart. Not a refusal:
        # the updater knows from its journal whether it already ran to an end.
        self._seen_serial[topic] = assignment.serial
        best = self._desired.get(model)
        if best is None or assignment.serial > best.serial:
            self._desired[model] = assignment
        self.assignment_error = ""

    def _verify(self, payload: bytes) -> Assignment:
        try:
            return verify_assignment(self.trusted_root(), payload)
        except (UnknownKeyError, ThresholdError):
            # Maybe signed by a key rotated in since our last refresh: walk the root, retry.
            # At most once per interval: anyone who can publish to our topics could otherwise
            # make every message cost a full metadata refresh.
            if self.now() - self._root_refreshed_at < _ROOT_REFRESH_MIN_S:
                raise _RootRefreshDue() from None
            self._root_refreshed_at = self.now()
            session = self.tuf_session()
            session.refresh()
            return verify_assignment(session.trusted_root(), payload)

    def _refused_assignment(self, topic: str, reason: str) -> None:
        log.warning("%s", reason)
        self.assignment_error = reason
        self._dirty = True

    def _back_off(self) -> None:
        self._retry_at = self.now() + self._retry_delay
        self._retry_delay = min(_RETRY_MAX_S, self._retry_delay * 2)

    def _work(self) -> None:
        """Advance every model: resume an interrupted download, or act on its assignment. A
        transfer problem pauses all of it with backoff; the journal keeps the place."""
        deferred, self._deferred = self._deferred, {}
        if self.now() - self._root_refreshed_at >= _ROOT_REFRESH_MIN_S:
            deferred.update(self._awaiting_root)
            self._awaiting_root = {}
        for topic, payload in deferred.items():
            self._take_assignment(topic, payload)
        try:
            for name, updater in self.updaters.items():
                if updater.journal.state in (State.DOWNLOADING, State.VERIFYING):
                    updater.continue_update()
                assignment = self._desired.get(name)
                if assignment is not None:
                    updater.consider(assignment)
        except TransferError as e:
            log.info("update paused: %s", e)
            self.pauses += 1
            self._back_off()
            return
        self._retry_delay = _RETRY_MIN_S

    def _tick(self) -> None:
        now = self.now()
        if now >= self._probation_due:
            for updater in self.updaters.values():
                updater.probation_tick()
            # Check again after the interval, or when a probation window ends, if sooner.
            ends = [
                u.journal.since + self.config.probation.seconds
                for u in self.updaters.values()
                if u.journal.state is State.PROBATION
            ]
            self._probation_due = min([now + self.config.probation.check_interval_s, *ends])
        # A new connection gets the status at once (see _publish_status).
        fresh = self.link.connections != self._reported_on
        if self._dirty or fresh or now >= self._status_due:
            self._publish_status(force=self._dirty)

    # -- status -----------------------------------------------------------------------------

    def status(self, *, sample: bool = True) -> StatusDocument:
        """The status now; ``sample``: a periodic sample, which reads the CPU meter anew."""
        if sample or self._cpu_sampled is None:
            self._cpu_sampled = self._cpu.percent()
        return status_document(
            self.config,
            self.updaters,
            uptime_s=self.now() - self._started,
            cpu_percent=self._cpu_sampled,
            assignment_error=self.assignment_error,
            bench_job=self.bench.in_flight,
        )

    def _publish_status(self, *, force: bool = True) -> None:
        """Sample the status and publish it, retained, if it says something new
        (``agent.report_policy``), or if ``force``: an event, or the agent stopping. A new
        connection always gets one: a broker that restarted without persistence lost the
        retained copy."""
        count_serving(self.metrics, self.updaters)  # scraped locally, connected or not
        if not self.link.connected.is_set():
            return
        now = self.now()
        # A report between samples (an event's) keeps their cadence and repeats the last
        # sample's CPU figure; the very first report takes the first reading.
        sampling = not force or self._cpu_sampled is None
        if sampling:
            self._status_due = now + self.config.report.interval_s
        sample = self.status(sample=sampling)
        if not force and self.link.connections == self._reported_on:
            why = publish_reason(
                self._reported,
                sample,
                age_s=now - self._reported_at,
                max_interval_s=self.config.report.max_interval_s,
                deadband=self._deadband,
            )
            if not why:
                return
            log.debug("status: publishing (%s)", why)
        self._dirty = False
        self._reported, self._reported_at = sample, now
        self._reported_on = self.link.connections
        body = sample.encode()
        self.link.publish(self.topics.status(self.config.device_id), body, retain=True)


def install_signal_handlers(agent: Agent) -> None:
    def handle(_signum: int, _frame: object) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
