"""One model's update, step by step: each step persists the journal, then acts.

The transition table is ``agent.update.machine``; this module performs the actions behind it (fetch,
assemble, verify, install, self-test, switch, probation, rollback) through the daemon's
:class:`Environment`, which tests can replace. Every step can be cut by a power loss right
after its journal write; :meth:`ModelUpdater.recover` picks the work up from there.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from agent.config import AgentConfig, ModelConfig
from agent.health import probation_failure
from agent.serving.slots import InferenceFigures, ServingSlot
from agent.sysinfo import free_disk_bytes, release_memory
from agent.update.machine import RESTING, Event, Journal, Resume, State, recover
from agent.update.selftest import LoadedVersion, gate, golden_run
from agent.update.store import VERIFIED_RECORD, ChunkCache, ChunkRef, ModelStore
from agent.update.transfer import (
    Limits,
    Release,
    TransferStats,
    assemble,
    bytes_needed,
    chunk_source,
    read_release,
    unique_chunks,
)
from agent.update.tuf_mqtt import TufSession
from edge_sdk.core.assignment import Assignment
from edge_sdk.core.bundle import SIGNATURES, Bundle, format_version, read_unpacked
from edge_sdk.core.trust import TrustRoot, verify_bundle
from edge_sdk.errors import (
    BundleError,
    DiskSpaceError,
    EdgeSdkError,
    ExpiredError,
    NotDeliveredError,
    ReplayError,
    ThresholdError,
    TransferError,
    UnknownKeyError,
    UpdateError,
    WrongTargetError,
)

log = logging.getLogger(__name__)
# Attempts in a row, without a chunk stored between them, in which the broker answered but did
# not deliver a message the signed metadata names (missing, or over the maximum packet size)
# before the update fails, reported: the daemon's backoff spaces them 1, 2, 4 s apart.
MAX_UNDELIVERED = 4
WAITING = "waiting: "  # the journal's reason while a download is paused, for the status


class Environment(Protocol):
    """What an update needs from the daemon around it."""

    config: AgentConfig
    cache: ChunkCache

    def now(self) -> float: ...

    def tuf_session(self) -> TufSession: ...

    def fetch(
        self, release: Release, local: Mapping[str, ChunkRef], on_chunk: Callable[[int], None]
    ) -> TransferStats: ...

    def local_chunks(self) -> dict[str, ChunkRef]: ...

    def trusted_root(self) -> TrustRoot: ...

    def event(self, model: str, journal: Journal, event: Event) -> None: ...

    def crash_point(self, name: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """The last finished update of a model, for the status report."""

    version: int | None
    result: str  # committed | failed | rolled_back | refused
    reason: str
    at: float

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "result": self.result,
            "reason": self.reason,
            "at": self.at,
        }


class ModelUpdater:
    def __init__(self, env: Environment, model: ModelConfig, store: ModelStore) -> None:
        self.env = env
        self.model = model
        self.store = store
        self.slot = ServingSlot(model.name)
        self.journal = store.load_journal()
        self.outcome: Outcome | None = None
        self.pending_refusal: tuple[int, str] | None = None  # (serial, reason) last refused
        # The serial of a failed assignment the operator published again: run it once more.
        self.retry_requested: int | None = None
        self.last_transfer: TransferStats | None = None
        self.previous_figures: InferenceFigures | None = None
        self.probation_figures: InferenceFigures | None = None
        # Versions served on the strength of their verification at install, as the current
        # trust root no longer verifies them: version -> (signed by a revoked key, why).
        self.trust_notes: dict[int, tuple[bool, str]] = {}
        self.undelivered = 0  # NotDeliveredError attempts in a row (MAX_UNDELIVERED)

    # -- journal ----------------------------------------------------------------------------

    def _save(self, journal: Journal) -> None:
        self.store.save_journal(journal)
        self.journal = journal
        self.env.crash_point(str(journal.state))

    def _fire(self, event: Event, reason: str = "", **changes: object) -> None:
        journal = self.journal.advance(event, now=self.env.now(), reason=reason, **changes)
        self._save(journal)
        self.env.event(self.model.name, journal, event)
        if journal.state in RESTING:
            release_memory()
            result = {State.COMMITTED: "committed", State.ROLLED_BACK: "rolled_back"}.get(
                journal.state, "failed"
            )
            self.outcome = Outcome(journal.version, result, journal.reason, self.env.now())

    @property
    def in_flight(self) -> bool:
        return self.journal.state not in RESTING

    # -- start and recovery -----------------------------------------------------------------

    def load_current(self) -> None:
        """Serve what ``current`` names, re-verified from disk (see :meth:`_verified`)."""
        try:
            version = self.store.current()
        except EdgeSdkError as e:
            log.error("%s", e)
            return
        if version is None or version == self.slot.version:
            return
        loaded = self._load(version)
        if loaded is not None:
            self.slot.swap(loaded)

    def _load(self, version: int) -> LoadedVersion | None:
        directory = self.store.version_dir(version)
        try:
            bundle = self._verified(version)
        except EdgeSdkError as e:
            log.error("installed version %s of %s does not verify: %s", version, self.model.name, e)
            return None
        return gate(
            bundle,
            threads=self.model.threads,
            memory_budget_mb=float("inf"),
            max_latency_ms=0,
            artifact_path=directory / bundle.manifest.artifact,
        )

    def recover(self) -> Resume:
        """Called once at start, before anything is served."""
        self.store.clean()  # what cut writes and removals left: temp files, renamed-aside dirs
        action, journal = recover(self.journal, self.env.config.probation.max_restarts)
        crash_loop = action is Resume.GIVE_UP or (
            action is Resume.ROLLBACK and self.journal.state is not State.ROLLING_BACK
        )
        if crash_loop:
            # Persist nothing more in the state that keeps dying: the next journal entry is
            # the crash-loop transition itself (failed or rolling back).
            self.journal = journal
        elif journal != self.journal:
            self._save(journal)  # the restart is counted on disk before anything is retried
        return action

    def resume(self, action: Resume) -> None:
        """Continue what :meth:`recover` decided (may raise ``TransferError``: retry later)."""
        if action is Resume.NOTHING:
            self.load_current()
        elif action in (Resume.DOWNLOAD, Resume.VERIFY):
            self.load_current()
            self.continue_update()
        elif action is Resume.SELFTEST:
            self.load_current()
            self._selftest_and_switch()
        elif action is Resume.SWITCH:
            self._selftest_and_switch()
        elif action is Resume.PROBATION:
            self._recheck_in_probation()
        elif action is Resume.ROLLBACK:
            if self.journal.state is not State.ROLLING_BACK:
                self._fire(Event.CRASH_LOOP, self.journal.reason, rollback_to=self.journal.previous)
            self._roll_back()
        elif action is Resume.GIVE_UP:
            reason = self.journal.reason
            self._discard_unswitched()
            self._fire(Event.CRASH_LOOP, reason)
            self.load_current()

    # -- assignments ------------------------------------------------------------------------

    def consider(self, assignment: Assignment) -> None:
        """Start what ``assignment`` asks, unless it is already done, refused or in flight."""
        j = self.journal
        current = self.store.current()
        installed = self.store.installed()
        served = self.slot.version
        # A signed rollback may cut a probation short, to a version still on disk.
        probation_rollback = (
            j.state is State.PROBATION and assignment.rollback and assignment.version in installed
        )
        if self.in_flight and not probation_rollback:
            return
        if assignment.version == served and served not in self.trust_notes:
            # Already serving it, verified. A version this device holds but does not serve
            # (its files no longer verify), or serves only as verified at install (its key
            # revoked since), is installed again: that is how a re-signed release lands.
            if assignment.serial > j.serial and not self.in_flight:
                # Acknowledged under its serial: a rollout waiting on this device's report of
                # the assignment sees it committed now, not after its wave timeout.
                self._fire(
                    Event.ALREADY_SERVING,
                    serial=assignment.serial,
                    version=served,
                    previous=current,
                    floor=max(j.floor, served),
                    allow_downgrade=assignment.rollback,
                    rollback_to=None,
                )
            return
        retry = j.state is State.FAILED and self.retry_requested == assignment.serial
        if (
            assignment.serial == j.serial
            and j.state in (State.FAILED, State.ROLLED_BACK, State.COMMITTED)
            and not retry
        ):
            # This exact assignment already ran to an end; wait for a new one, or for the
            # operator to publish this one again after a failure (a retry).
            return
        if self.pending_refusal is not None and self.pending_refusal[0] == assignment.serial:
            return
        if assignment.version < j.floor and not assignment.rollback:
            reason = (
                f"refused {self.model.name} {_v(assignment.version)}: older than {_v(j.floor)}, "
                "already committed here (anti-rollback); send a signed rollback to go back"
            )
            self._refuse(assignment.serial, assignment.version, reason)
            return
        if j.state is State.FAILED and j.version != assignment.version:
            # Verified chunks of a failed update stay for a retry of that version; a new
            # version starts from an empty cache.
            self.env.cache.clear()
        if assignment.rollback and assignment.version in installed:
            target, problem = self._checked(assignment.version)
            if target is None:
                reason = (
                    f"refused rollback of {self.model.name} to {_v(assignment.version)}: it no "
                    f"longer verifies or passes its self-test here ({problem}); still serving "
                    f"{_named(served)}; assign a version the repository holds"
                )
                self._refuse(assignment.serial, assignment.version, reason)
                return
            self._fire(
                Event.ROLLBACK_REQUESTED,
                f"rollback to {_v(assignment.version)} requested by the fleet",
                serial=assignment.serial,
                version=assignment.version,
                previous=current,
                rollback_to=assignment.version,
            )
            self._roll_back(target)
            return
        self.retry_requested = None
        self._fire(
            Event.ASSIGNED,
            serial=assignment.serial,
            version=assignment.version,
            previous=current,
            allow_downgrade=assignment.rollback,
            rollback_to=None,
        )
        self.undelivered = 0
        self.continue_update()

    def _refuse(self, serial: int, version: int, reason: str) -> None:
        log.warning("%s", reason)
        self.pending_refusal = (serial, reason)
        self.outcome = Outcome(version, "refused", reason, self.env.now())
        self.env.event(self.model.name, replace(self.journal, reason=reason), Event.REFUSED)

    # -- the steps --------------------------------------------------------------------------

    def continue_update(self) -> None:
        """Download (resuming), verify, install, self-test, switch. ``TransferError`` leaves
        the journal in ``downloading`` for a retry; any other refusal fails the update."""
        j = self.journal
        assert j.version is not None
        try:
            session = self.env.tuf_session()
            session.refresh()
            limits = Limits(
                self.env.config.limits.max_chunk_bytes, self.env.config.limits.max_artifact_bytes
            )
            release = read_release(
                session,
                self.model.name,
                j.version,
                profile=self.env.config.profile.id,
                runtime=str(self.env.config.profile.runtime),
                limits=limits,
            )
            if j.version < j.floor and not j.allow_downgrade:
                raise ReplayError(f"{_v(j.version)} is older than the committed {_v(j.floor)}")
            if j.state is State.DOWNLOADING:
                self._download(release)
            self._verify_and_install(session, release)
        except NotDeliveredError as e:
            self.undelivered += 1
            if self.undelivered >= MAX_UNDELIVERED:
                self._fail_before_switch(
                    f"{e}; gave up after {self.undelivered} tries with the broker up; publish "
                    "the release again (or with smaller chunks) and assign it again",
                    keep_chunks=self.journal.state is State.DOWNLOADING,
                )
                return
            self._waiting(str(e))
            raise
        except TransferError as e:
            self._waiting(str(e))
            raise
        except EdgeSdkError as e:
            # A download that failed keeps its verified chunks for a retry, unless the disk
            # is full; a release refused after it was assembled leaves nothing behind.
            downloading = self.journal.state is State.DOWNLOADING
            keep = downloading and not isinstance(e, DiskSpaceError)
            self._fail_before_switch(str(e), keep_chunks=keep)
            return
        self._selftest_and_switch()

    def _waiting(self, why: str) -> None:
        """Note in the journal why the update is paused, so the status says it."""
        reason = WAITING + why
        if self.journal.reason == reason or self.journal.state in RESTING:
            return
        journal = replace(self.journal, reason=reason)
        try:
            self.store.save_journal(journal)
        except UpdateError as e:
            log.warning("%s", e)
            return
        self.journal = journal

    def _not_waiting(self) -> None:
        """A step went through: drop the pause reason before the next event carries it."""
        if self.journal.reason.startswith(WAITING):
            self.journal = replace(self.journal, reason="")

    def _download(self, release: Release) -> None:
        local = self.env.local_chunks()
        have = [s for s in unique_chunks(release) if self.env.cache.has(s) or s in local]
        need = bytes_needed(release, have)
        free = free_disk_bytes(self.store.root)
        reserve = self.env.config.limits.min_free_bytes
        if free - need < reserve:
            raise DiskSpaceError(
                f"not enough disk for {release.name} {_v(release.version)}: needs {need} bytes and "
                f"{reserve} kept free, {free} available; free space or raise limits.min_free_bytes"
            )
        test = self.env.config.test

        def on_chunk(n: int) -> None:
            self.undelivered = 0  # progress: the broker does deliver
            if test.crash_after_chunks and n == test.crash_after_chunks:
                self.env.crash_point("download")
            if test.chunk_delay_s:
                time.sleep(test.chunk_delay_s)

        stats = self.env.fetch(release, local, on_chunk)
        self.last_transfer = stats
        log.info("%s %s: %s", release.name, _v(release.version), stats)
        self._not_waiting()
        self._fire(Event.DOWNLOADED)

    def _verify_and_install(self, session: TufSession, release: Release) -> None:
        version = release.version
        staging = self.store.fresh_staging(version)
        assemble(release, staging, chunk_source(self.env.cache, self.env.local_chunks()))
        bundle = read_unpacked(staging)
        verify_bundle(session.trusted_root(), bundle, f"{release.name} {_v(version)}")
        m = bundle.manifest
        if (m.name, m.version, m.profile, m.runtime) != (
            release.name,
            version,
            release.profile,
            release.runtime,
        ):
            raise WrongTargetError(
                f"the signed manifest says {m.name} {_v(m.version)} for {m.profile}/{m.runtime}, "
                f"but the fleet published it as {release.name} {_v(version)}"
            )
        self.store.install(
            version,
            release.chunk_index(),
            verified={**bundle.signed_files(), SIGNATURES: bundle.signatures or b""},
        )
        self.env.crash_point("installed")
        self.env.cache.discard(unique_chunks(release))
        self._not_waiting()
        self._fire(Event.VERIFIED)

    def _selftest_and_switch(self) -> None:
        j = self.journal
        assert j.version is not None
        loaded, problem = self._checked(j.version)
        if loaded is None:
            reason = f"self-test of {self.model.name} {_v(j.version)} failed: {problem}"
            if j.state is State.STAGED:
                self._fire(Event.SELFTEST_FAILED, reason)
                if j.version != self.store.current():  # not a re-signed copy of what serves
                    self.store.remove(j.version)
                self.load_current()
            else:  # activating: `current` may already name it
                self._fire(Event.SELFTEST_FAILED, reason, rollback_to=j.previous)
                self._roll_back()
            return
        if j.state is State.STAGED:
            self._fire(Event.SELFTEST_PASSED)
        self.store.set_current(j.version)
        self.env.crash_point("switched")
        # The version being replaced sets the bar for the new one's latency in probation.
        self.previous_figures = self.slot.figures() if self.slot.loaded is not None else None
        self.slot.swap(loaded)
        self._fire(Event.SWITCHED)

    def _verified(self, version: int) -> Bundle:
        """An installed version's bundle, checked before it may serve.

        It must be complete and verify under the current trust root, or, when only its
        signatures fail there (the signing key was revoked by a rotation, or the signatures or
        the root expired), have been verified by this device at install and still be exactly
        those bytes (``verified.json``). That keeps a rotation from taking the running model
        down at the next restart; status reports it (``signed_by_revoked_key``) until a
        re-signed release of the same version is installed. New installs never get this
        allowance: they verify under the current root or are refused.
        """
        directory = self.store.version_dir(version)
        if not self.store.complete(version):
            raise BundleError(
                f"{_v(version)} of {self.model.name} is not completely installed in {directory}"
            )
        try:
            bundle = read_unpacked(directory)
        except OSError as e:
            raise BundleError(f"cannot read {directory}: {e}") from e
        if (bundle.manifest.name, bundle.manifest.version) != (self.model.name, version):
            raise WrongTargetError(
                f"{directory} holds {bundle.manifest.name} {_v(bundle.manifest.version)}, not "
                f"{self.model.name} {_v(version)}"
            )
        try:
            verify_bundle(self.env.trusted_root(), bundle, str(directory))
        except (UnknownKeyError, ThresholdError, ExpiredError) as e:
            if bundle.signatures is None or not self.store.intact(
                version, {**bundle.signed_files(), SIGNATURES: bundle.signatures}
            ):
                raise
            revoked = not isinstance(e, ExpiredError)
            why = "signed by a key the trust root no longer lists" if revoked else str(e)
            note = (
                f"{_v(version)} was verified at install ({VERIFIED_RECORD}) and its files are "
                f"unchanged, so it keeps serving, but it is {why}; publish it re-signed and "
                "assign it again"
            )
            if self.trust_notes.get(version) != (revoked, note):
                log.warning("%s: %s", self.model.name, note)
            self.trust_notes[version] = (revoked, note)
        else:
            self.trust_notes.pop(version, None)
        return bundle

    def served_trust(self) -> tuple[bool, str]:
        """(signed by a revoked key, why) for the version being served; (False, "") when it
        verifies under the current trust root or nothing is served."""
        version = self.slot.version
        if version is None:
            return False, ""
        return self.trust_notes.get(version, (False, ""))

    def _gate(self, version: int) -> LoadedVersion:
        directory = self.store.version_dir(version)
        bundle = self._verified(version)
        return gate(
            bundle,
            threads=self.model.threads,
            memory_budget_mb=float(self.env.config.profile.budget.memory_mb),
            max_latency_ms=self.model.max_latency_ms,
            artifact_path=directory / bundle.manifest.artifact,
        )

    def _checked(self, version: int) -> tuple[LoadedVersion | None, str]:
        """The version loaded and through its gate, or ``None`` and why not: files that no
        longer verify or read are a failed self-test too, never an exception out of an update."""
        try:
            loaded = self._gate(version)
        except EdgeSdkError as e:
            return None, str(e)
        return (loaded, "") if loaded.gate.passed else (None, loaded.gate.detail)

    def _recheck_in_probation(self) -> None:
        j = self.journal
        assert j.version is not None
        if self.store.current() != j.version:
            # Cut between the journal and the pointer cannot happen (pointer first); be safe.
            self.store.set_current(j.version)
        loaded, problem = self._checked(j.version)
        if loaded is None:
            self._fire(
                Event.PROBATION_FAILED,
                f"re-check after restart failed: {problem}",
                rollback_to=j.previous,
            )
            self._roll_back()
            return
        self.slot.swap(loaded)
        self._save(replace(j, since=self.env.now()))  # the window starts again

    def probation_tick(self) -> None:
        """During probation: re-run the golden vectors on the serving version; commit once the
        window has passed without a failure."""
        j = self.journal
        if j.state is not State.PROBATION or j.version is None:
            return
        loaded = self.slot.loaded
        if loaded is None or loaded.version != j.version:
            return
        check, _ = golden_run(loaded.bundle, loaded.model)
        rules = self.env.config.probation
        window_over = self.env.now() - j.since >= rules.seconds
        figures = self.slot.figures()
        self.probation_figures = figures
        if not check.passed:
            failure: str | None = f"golden vectors failed in service: {check.detail}"
        else:
            failure = probation_failure(
                figures,
                self.previous_figures,
                rules,
                latency_budget_ms=self.model.max_latency_ms,
                window_over=window_over,
            )
        if failure is not None:
            self._fire(
                Event.PROBATION_FAILED,
                f"probation of {_v(j.version)} failed: {failure}",
                rollback_to=j.previous,
            )
            self._roll_back()
            return
        if window_over:
            self._fire(Event.PROBATION_PASSED, floor=max(j.floor, j.version))
            self._prune(j.version, j.previous)

    def _prune(self, current: int, previous: int | None) -> None:
        """Keep ``current``, ``previous`` (the rollback target) and the newest others up to
        ``limits.keep_versions``."""
        keep = [current] + ([previous] if previous is not None else [])
        for version in reversed(self.store.installed()):
            if len(keep) >= self.env.config.limits.keep_versions:
                break
            if version not in keep:
                keep.append(version)
        self.store.prune(keep, between=lambda: self.env.crash_point("pruning"))

    def _roll_back(self, loaded: LoadedVersion | None = None) -> None:
        """Switch back to ``rollback_to`` (``loaded``: already through its gate). A target that
        is gone or no longer verifies is not switched to: the device stays on what it serves
        and the reason says so. No target at all (a first install failed) serves nothing."""
        j = self.journal
        target = j.rollback_to
        if target is None:
            self.store.current_path.unlink(missing_ok=True)
            self.slot.swap(None)
            self.env.crash_point("rolled_back_switch")
            self._fire(Event.ROLLED_BACK, j.reason)
            return
        problem = f"{_v(target)} is not installed completely"
        if target in self.store.installed():
            if loaded is None or loaded.version != target:
                loaded, problem = self._checked(target)
            if loaded is not None:
                self.store.set_current(target)
                self.slot.swap(loaded)
                self.env.crash_point("rolled_back_switch")
                self._fire(Event.ROLLED_BACK, j.reason)
                return
        if self.slot.loaded is None:
            self.load_current()  # after a restart: what `current` names, if it verifies
        served = self.slot.version
        reason = (
            f"{j.reason + '; ' if j.reason else ''}rollback to {_v(target)} refused: {problem}; "
            f"staying on {_named(served)}"
        )
        log.error("%s: %s", self.model.name, reason)
        self.env.crash_point("rolled_back_switch")
        self._fire(Event.ROLLED_BACK, reason, version=served)

    def _fail_before_switch(self, reason: str, *, keep_chunks: bool = False) -> None:
        """Fail the update; with ``keep_chunks`` the verified chunks stay, so the operator's
        retry of the same version resumes from them."""
        self._discard_unswitched(keep_chunks=keep_chunks)
        self._fire(Event.ERROR, reason)

    def _discard_unswitched(self, *, keep_chunks: bool = False) -> None:
        """Remove what a failed update left, never what `current` or `previous` name (nor,
        with ``keep_chunks``, the verified chunks a retry resumes from)."""
        j = self.journal
        if not keep_chunks:
            self.env.cache.clear()
        if j.version is not None and j.version != self.store.current() and j.version != j.previous:
            self.store.remove(j.version)
        shutil.rmtree(self.store.staging, ignore_errors=True)
        self.store.staging.mkdir(parents=True, exist_ok=True)


def _named(version: int | None) -> str:
    return "nothing" if version is None else _v(version)


def _v(version: int) -> str:
    """A version as its user wrote it (v1.2.0), from the integer a message has at hand."""
    return f"v{format_version(version)}"
