"""After a version is installed: self-test, switch, probation, and rollback.

The version being replaced stays installed until probation ends, so a failure at any of these
steps (or a crash loop after the switch) switches back to it; a rollback target that no longer
verifies is refused and the device stays on what it serves, with the reason in the status.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

from agent.health import probation_failure
from agent.update.machine import Event, State
from agent.update.release import version_text
from agent.update.selftest import LoadedVersion, golden_run
from agent.update.update_state import version_or_nothing
from agent.update.version_checks import VersionChecks

# One log for an update, whichever step writes to it (the name its lines carry).
log = logging.getLogger("agent.update.updater")


class SwitchSteps(VersionChecks):
    """The steps from a verified install to a committed version (or back)."""

    def _selftest_and_switch(self) -> None:
        j = self.journal
        assert j.version is not None
        loaded, problem = self._checked(j.version)
        if loaded is None:
            reason = f"self-test of {self.model.name} {version_text(j.version)} failed: {problem}"
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
                f"probation of {version_text(j.version)} failed: {failure}",
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
        problem = f"{version_text(target)} is not installed completely"
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
            f"{j.reason + '; ' if j.reason else ''}rollback to {version_text(target)} refused: "
            f"{problem}; staying on {version_or_nothing(served)}"
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
