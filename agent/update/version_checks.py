"""Whether an installed version may serve: complete on disk, verified under the trust root
(or, after a key rotation, unchanged since it was verified at install), and through its gate.

A version that fails here is never loaded: at start the device serves nothing rather than an
unverified model, and an update treats it as a failed self-test.
"""

from __future__ import annotations

import logging

from agent.update.release import version_text
from agent.update.selftest import LoadedVersion, gate
from agent.update.store import VERIFIED_RECORD
from agent.update.update_state import UpdaterState
from edge_sdk.core.bundle import SIGNATURES, Bundle, read_unpacked
from edge_sdk.core.trust import verify_bundle
from edge_sdk.errors import (
    BundleError,
    EdgeSdkError,
    ExpiredError,
    ThresholdError,
    UnknownKeyError,
    WrongTargetError,
)

# One log for an update, whichever step writes to it (the name its lines carry).
log = logging.getLogger("agent.update.updater")


class VersionChecks(UpdaterState):
    """The checks of :mod:`agent.update.version_checks`, on one model's installed versions."""

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
                f"{version_text(version)} of {self.model.name} is not completely installed in "
                f"{directory}"
            )
        try:
            bundle = read_unpacked(directory)
        except OSError as e:
            raise BundleError(f"cannot read {directory}: {e}") from e
        if (bundle.manifest.name, bundle.manifest.version) != (self.model.name, version):
            raise WrongTargetError(
                f"{directory} holds {bundle.manifest.name} "
                f"{version_text(bundle.manifest.version)}, not {self.model.name} "
                f"{version_text(version)}"
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
                f"{version_text(version)} was verified at install ({VERIFIED_RECORD}) and its "
                f"files are unchanged, so it keeps serving, but it is {why}; publish it re-signed "
                "and assign it again"
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
