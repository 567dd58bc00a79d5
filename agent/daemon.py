"""``edge-agent run``: the long-running daemon that wires the pieces together.

One main thread owns all decisions and every write to the state directory; the MQTT network
thread only hands messages over through a queue. On start the agent recovers each model from
its journal and serves ``current`` before it even connects, so a device with no broker still
runs its model.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.bench_job import BenchJobs
from agent.config import AgentConfig
from agent.metrics import Metrics
from agent.mqtt_link import MqttLink, Will
from agent.serving.codec import Limits
from agent.serving.http_server import ApiServer
from agent.serving.inference_api import InferenceApi
from agent.serving.oip import version_label
from agent.sysinfo import CpuMeter, free_disk_bytes, release_memory, rss_bytes
from agent.update.chunk_cache import ChunkCache, ChunkRef
from agent.update.machine import RESTING as RESTING_STATES
from agent.update.machine import Event, Journal, Resume, State
from agent.update.release import Release
from agent.update.serials import SerialFloors, Verdict, judge
from agent.update.store import ModelStore
from agent.update.transfer import TransferStats, fetch_release
from agent.update.tuf_mqtt import TufSession
from agent.update.updater import ModelUpdater
from edge_sdk import __version__
from edge_sdk.core.assignment import Assignment, verify_assignment
from edge_sdk.core.bundle import format_version

if TYPE_CHECKING:  # grpcio is the grpc extra: imported only when [serving] asks for gRPC
    from agent.serving.grpc_server import GrpcServer
from edge_sdk.core.topics import Topics
from edge_sdk.core.trust import TrustRoot
from edge_sdk.core.trust_root import load_trust_root
from edge_sdk.errors import (
    ConfigError,
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
    def __init__(self, config: AgentConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self.topics = Topics(config.broker.topic_prefix, config.fleet)
        # The pinned root is checked now, not when the first update arrives: a public key, a
        # targets file, an empty file or a FIFO there is one line and exit 2 at start.
        load_trust_root(config.trust_root)
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.tuf_dir = config.state_dir / "tuf"
        self.cache = ChunkCache(
            config.state_dir / "chunks", config.test.disk_full_after_bytes or None
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
        self._status_due = 0.0
        self._probation_due = 0.0
        self._dirty = True
        self.assignment_error = self.serial_floors.problem
        self.pauses = 0  # updates paused for want of the broker (resumed later)
        self.metrics = Metrics()
        self.api_servers: list[ApiServer] = []
        hooks = config.test
        self.bench = BenchJobs(
            self,
            slow=lambda p: hooks.bench_slow_ms if p == hooks.bench_slow_precision else 0.0,
        )
        self.grpc_servers: list[GrpcServer] = []
        limits = config.limits
        device = config.device_id
        self.link = MqttLink(
            config.broker,
            client_id=device,
            will=Will(self.topics.presence(device), json.dumps({"online": False}).encode()),
            online=Will(self.topics.presence(device), json.dumps({"online": True}).encode()),
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
        payload = {
            "device": self.config.device_id,
            "model": model,
            "event": str(event),
            "state": str(journal.state),
            "version": journal.version,
            "reason": journal.reason,
            "at": self.now(),
        }
        label = "" if journal.version is None else f" {format_version(journal.version)}"
        log.info("%s%s: %s -> %s %s", model, label, event, journal.state, journal.reason)
        self._count(model, journal, event)
        if self.link.connected.is_set():
            self.link.publish(
                self.topics.events(self.config.device_id), json.dumps(payload).encode()
            )

    def _count(self, model: str, journal: Journal, event: Event) -> None:
        m = self.metrics
        m.set_state(model, journal.state)
        if event is Event.ASSIGNED:
            m.updates.labels(model).inc()
        elif event is Event.REFUSED:
            m.results.labels(model, "refused").inc()
        elif journal.state in RESTING_STATES and event is not Event.ALREADY_SERVING:
            result = {State.COMMITTED: "committed", State.ROLLED_BACK: "rolled_back"}
            m.results.labels(model, result.get(journal.state, "failed")).inc()

    def crash_point(self, name: str) -> None:
        """Fault injection for the power-cut tests: die here, as a power cut would."""
        if name and name == self.config.test.crash_at:
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
        self._start_api()
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
            for server in self.api_servers:
                server.stop()
            for grpc_server in self.grpc_servers:
                grpc_server.stop()

    def _start_api(self) -> None:
        """The inference API on loopback and/or a Unix socket, as ``[serving]`` says; over
        HTTP, and over gRPC where ``grpc_listen`` / ``grpc_unix_socket`` ask for it."""
        serving = self.config.serving
        wants_grpc = bool(serving.grpc_listen) or serving.grpc_unix_socket is not None
        if not serving.listen and serving.unix_socket is None and not wants_grpc:
            return
        slots = {name: u.slot for name, u in self.updaters.items()}
        batching = {m.name: (m.batch_window_ms, m.max_batch) for m in self.config.models}
        limits = Limits(
            max_samples=serving.max_samples, max_decoded_bytes=serving.max_decoded_bytes
        )

        def app() -> InferenceApi:
            return InferenceApi(
                slots,
                self.metrics,
                max_body_bytes=serving.max_body_bytes,
                threads=serving.threads,
                batching=batching,
                limits=limits,
            )

        head = serving.max_header_bytes
        if serving.listen:
            self.api_servers.append(
                ApiServer(app(), serving.host, serving.port, max_header_bytes=head)
            )
        if serving.unix_socket is not None:
            # A socket a killed agent left there is replaced; nothing else ever is (ApiServer).
            self.api_servers.append(
                ApiServer(app(), "", 0, str(serving.unix_socket), max_header_bytes=head)
            )
        for server in self.api_servers:
            try:
                server.start()
            except OSError as e:
                raise ConfigError(
                    f"{self.config.path}: serving: {e}; choose another address (serving.listen, "
                    "serving.unix_socket) or stop what holds it"
                ) from e
            log.info("serving on %s", _address("http", server.host, server.bound_port, server))
        if wants_grpc:
            self._start_grpc(slots, batching, limits)
            for g in self.grpc_servers:
                log.info("serving gRPC on %s", _address("grpc", g.host, g.bound_port, g))

    def _start_grpc(
        self,
        slots: Mapping[str, Any],
        batching: Mapping[str, tuple[float, int]],
        limits: Limits,
    ) -> None:
        serving = self.config.serving
        try:
            from agent.serving.grpc_server import GrpcInference, GrpcServer
        except ImportError as e:
            raise ConfigError(
                f"{self.config.path}: serving.grpc_listen/grpc_unix_socket need grpcio and "
                f"protobuf ({e.name or e}): pip install 'edgesdk-fleet[grpc]', or remove them"
            ) from e

        def server(**where: Any) -> GrpcServer:
            service = GrpcInference(
                slots, self.metrics, threads=serving.threads, batching=batching, limits=limits
            )
            return GrpcServer(
                service,
                max_message_bytes=serving.max_body_bytes,
                max_header_bytes=serving.max_header_bytes,
                **where,
            )

        if serving.grpc_listen:
            self.grpc_servers.append(server(host=serving.grpc_host, port=serving.grpc_port))
        if serving.grpc_unix_socket is not None:
            self.grpc_servers.append(server(unix_socket=str(serving.grpc_unix_socket)))
        for grpc_server in self.grpc_servers:
            try:
                grpc_server.start()
            except OSError as e:
                for api in self.api_servers:  # nothing left listening behind the error
                    api.stop()
                for started in self.grpc_servers:
                    started.stop()
                raise ConfigError(
                    f"{self.config.path}: serving: gRPC: {e}; choose another address "
                    "(serving.grpc_listen, serving.grpc_unix_socket) or stop what holds it"
                ) from e

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
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
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
        if self._dirty or now >= self._status_due:
            self._publish_status()

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for name, u in self.updaters.items():
            models[name] = model_status(u)
        return {
            "device": self.config.device_id,
            "fleet": self.config.fleet,
            "group": self.config.group,
            "profile": self.config.profile.id,
            "agent_version": __version__,
            "uptime_s": round(self.now() - self._started, 1),
            "cpu_percent": self._cpu.percent(),
            "memory_rss_bytes": rss_bytes(),
            "disk_free_bytes": free_disk_bytes(self.config.state_dir),
            "assignment_error": self.assignment_error,
            "bench_job": self.bench.in_flight,
            "models": models,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def _publish_status(self) -> None:
        for name, u in self.updaters.items():  # scraped locally, connected or not
            loaded = u.slot.loaded
            label = None if loaded is None else version_label(loaded)
            self.metrics.set_serving(name, u.slot.version, label)
        if not self.link.connected.is_set():
            return
        self._dirty = False
        self._status_due = self.now() + self.config.report.interval_s
        body = json.dumps(self.status(), sort_keys=True).encode()
        self.link.publish(self.topics.status(self.config.device_id), body, retain=True)


def _address(scheme: str, host: str, port: int, server: ApiServer | GrpcServer) -> str:
    """Where a front end listens, as a client would name it."""
    if server.unix_socket:
        return f"unix:{os.path.abspath(server.unix_socket)}"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def model_status(u: ModelUpdater) -> dict[str, Any]:
    j, t = u.journal, u.last_transfer
    revoked, trust_note = u.served_trust()
    return {
        # What is actually served, never just what `current` names.
        "version": u.slot.version,
        "signed_by_revoked_key": revoked,
        "trust_note": trust_note,
        "state": str(j.state),
        "target_version": j.version,
        # The assignment that started the last or ongoing update: how an operator's rollout
        # tells its own outcome from an older one for the same version.
        "serial": j.serial,
        "floor": j.floor,
        "reason": j.reason,
        "last_result": u.outcome.to_json() if u.outcome is not None else None,
        "last_transfer": None
        if t is None
        else {
            "chunks": t.chunks,
            "fetched": t.fetched,
            "fetched_bytes": t.fetched_bytes,
            "cached": t.cached,
            "reused": t.reused,
            # Where the fetched chunks came from: each mirror's base URL, or "broker".
            "sources": {src: {"chunks": n, "bytes": b} for src, n, b in t.sources},
        },
        "inference": u.slot.figures().to_json(),
        # The health gate's view while in probation (and of the last one after it).
        "probation": None
        if u.probation_figures is None
        else {
            "figures": u.probation_figures.to_json(),
            "previous_version": None
            if u.previous_figures is None
            else u.previous_figures.to_json(),
        },
    }


def local_status(config: AgentConfig) -> dict[str, Any]:
    """What ``edge-agent status`` prints: read from the state directory, no broker needed."""
    models: dict[str, Any] = {}
    for m in config.models:
        store = ModelStore(config.state_dir, m.name)
        journal = store.load_journal()
        last = journal.history[-1] if journal.history else None
        models[m.name] = {
            "version": store.current(),
            "installed": store.installed(),
            "state": str(journal.state),
            "target_version": journal.version,
            "floor": journal.floor,
            "reason": journal.reason,
            "restarts": journal.restarts,
            "last_event": last,
        }
    return {
        "device": config.device_id,
        "fleet": config.fleet,
        "profile": config.profile.id,
        "state_dir": str(config.state_dir),
        "models": models,
    }


def install_signal_handlers(agent: Agent) -> None:
    def handle(_signum: int, _frame: object) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
