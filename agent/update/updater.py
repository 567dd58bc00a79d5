"""One model's update, step by step: each step persists the journal, then acts.

The transition table is ``agent.update.machine``; :class:`ModelUpdater` performs the actions
behind it through the daemon's :class:`agent.update.update_state.Environment`, which tests can
replace. This module holds recovery at start, the assignments the fleet sends, and the download,
verification and install of a release; the self-test, switch, probation and rollback that
follow are ``agent.update.switching``, the checks an installed version passes before it serves
``agent.update.version_checks``. Every step can be cut by a power loss right after its journal
write; :meth:`ModelUpdater.recover` picks the work up from there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from agent.sysinfo import free_disk_bytes
from agent.update.machine import RESTING, Event, Resume, State, recover
from agent.update.release import (
    Limits,
    Release,
    bytes_needed,
    read_release,
    unique_chunks,
    version_text,
)
from agent.update.switching import SwitchSteps
from agent.update.transfer import assemble, chunk_source
from agent.update.tuf_mqtt import TufSession
from agent.update.update_state import Outcome, version_or_nothing
from edge_sdk.core.bundle import SIGNATURES, read_unpacked
from edge_sdk.core.trust import verify_bundle
from edge_sdk.core.wire.assignment import Assignment
from edge_sdk.core.wire.protocol import UpdateResult
from edge_sdk.errors import (
    DiskSpaceError,
    EdgeSdkError,
    NotDeliveredError,
    ReplayError,
    UpdateError,
    WrongTargetError,
    retry_later,
)

log = logging.getLogger(__name__)
# Attempts in a row, without a chunk stored between them, in which the broker answered but did
# not deliver a message the signed metadata names (missing, or over the maximum packet size)
# before the update fails, reported: the daemon's backoff spaces them 1, 2, 4 s apart.
MAX_UNDELIVERED = 4
WAITING = "waiting: "  # the journal's reason while a download is paused, for the status


class ModelUpdater(SwitchSteps):
    """One model's update, from the assignment to a committed (or failed) version."""

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
                f"refused {self.model.name} {version_text(assignment.version)}: older than "
                f"{version_text(j.floor)}, already committed here (anti-rollback); send a signed "
                "rollback to go back"
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
                    f"refused rollback of {self.model.name} to {version_text(assignment.version)}: "
                    f"it no longer verifies or passes its self-test here ({problem}); still "
                    f"serving {version_or_nothing(served)}; assign a version the repository holds"
                )
                self._refuse(assignment.serial, assignment.version, reason)
                return
            self._fire(
                Event.ROLLBACK_REQUESTED,
                f"rollback to {version_text(assignment.version)} requested by the fleet",
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
        self.outcome = Outcome(version, UpdateResult.REFUSED, reason, self.env.now())
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
                runtimes=self.env.config.profile.runtimes,
                limits=limits,
            )
            if j.version < j.floor and not j.allow_downgrade:
                raise ReplayError(
                    f"{version_text(j.version)} is older than the committed {version_text(j.floor)}"
                )
            if j.state is State.DOWNLOADING:
                self._download(release)
            self._verify_and_install(session, release)
        except EdgeSdkError as e:
            if retry_later(e):  # the broker or a mirror is away: nothing was decided
                if self._wait_for_transport(e):
                    raise
                return
            # A download that failed keeps its verified chunks for a retry, unless the disk
            # is full; a release refused after it was assembled leaves nothing behind.
            downloading = self.journal.state is State.DOWNLOADING
            keep = downloading and not isinstance(e, DiskSpaceError)
            self._fail_before_switch(str(e), keep_chunks=keep)
            return
        self._selftest_and_switch()

    def _wait_for_transport(self, e: EdgeSdkError) -> bool:
        """A transport error pauses the update (True: the caller retries later). A signed
        message that never came while the broker was up (NotDeliveredError) is retried a
        bounded number of times, then the update fails here (False)."""
        if isinstance(e, NotDeliveredError):
            self.undelivered += 1
            if self.undelivered >= MAX_UNDELIVERED:
                self._fail_before_switch(
                    f"{e}; gave up after {self.undelivered} tries with the broker up; publish "
                    "the release again (or with smaller chunks) and assign it again",
                    keep_chunks=self.journal.state is State.DOWNLOADING,
                )
                return False
        self._waiting(str(e))
        return True

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
                f"not enough disk for {release.name} {version_text(release.version)}: needs {need} "
                f"bytes and {reserve} kept free, {free} available; free space or raise "
                "limits.min_free_bytes"
            )
        test = self.env.failpoints

        def on_chunk(n: int) -> None:
            self.undelivered = 0  # progress: the broker does deliver
            if test.crash_after_chunks and n == test.crash_after_chunks:
                self.env.crash_point("download")
            if test.chunk_delay_s:
                time.sleep(test.chunk_delay_s)

        stats = self.env.fetch(release, local, on_chunk)
        self.last_transfer = stats
        log.info("%s %s: %s", release.name, version_text(release.version), stats)
        self._not_waiting()
        self._fire(Event.DOWNLOADED)

    def _verify_and_install(self, session: TufSession, release: Release) -> None:
        version = release.version
        staging = self.store.fresh_staging(version)
        assemble(release, staging, chunk_source(self.env.cache, self.env.local_chunks()))
        bundle = read_unpacked(staging)
        verify_bundle(session.trusted_root(), bundle, f"{release.name} {version_text(version)}")
        m = bundle.manifest
        if (m.name, m.version, m.profile, m.runtime) != (
            release.name,
            version,
            release.profile,
            release.runtime,
        ):
            raise WrongTargetError(
                f"the signed manifest says {m.name} {version_text(m.version)} for "
                f"{m.profile}/{m.runtime}, but the fleet published it as {release.name} "
                f"{version_text(version)}"
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
