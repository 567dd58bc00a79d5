"""One model's update as the daemon holds it: what it needs from the daemon
(:class:`Environment`, which tests can replace), what it reports (:class:`Outcome`), and the
journal it keeps.

Every step of an update persists the journal first, then acts (:meth:`UpdaterState._fire`), so
a power cut right after any journal write leaves work that
:meth:`agent.update.updater.ModelUpdater.recover` picks up. The steps build on this class, each
module on the one before: ``agent.update.version_checks`` (whether an installed version may
serve), ``agent.update.switching`` (self-test, switch, probation, rollback) and
``agent.update.updater`` (recovery, assignments, download and install).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from agent.config import AgentConfig, ModelConfig
from agent.failpoints import Failpoints
from agent.serving.slots import InferenceFigures, ServingSlot
from agent.sysinfo import release_memory
from agent.update.chunk_cache import ChunkCache, ChunkRef
from agent.update.machine import RESTING, Event, Journal
from agent.update.release import Release, version_text
from agent.update.store import ModelStore
from agent.update.transfer import TransferStats
from agent.update.tuf_mqtt import TufSession
from edge_sdk.core.trust import TrustRoot
from edge_sdk.core.wire.protocol import result_of


class Environment(Protocol):
    """What an update needs from the daemon around it."""

    config: AgentConfig
    failpoints: Failpoints
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


class UpdaterState:
    """One model's update: its journal, what it serves, and what the status reports of it."""

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
            result = result_of(journal.state)  # the wire contract's result names
            self.outcome = Outcome(journal.version, result, journal.reason, self.env.now())

    @property
    def in_flight(self) -> bool:
        return self.journal.state not in RESTING


def version_or_nothing(version: int | None) -> str:
    return "nothing" if version is None else version_text(version)
