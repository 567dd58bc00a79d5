"""The update state machine: one explicit transition table, and what to do after a restart.

Pure: no I/O, no clock. The daemon persists a :class:`Journal` *before* each action (Mender's
rule), so whatever moment power is cut, the journal names the step that may be half done and
:func:`recover` says how to finish or undo it.

    idle ──assigned──► downloading ──downloaded──► verifying ──verified──► staged
                           │                          │                      │
                         error                      error        selftest_passed / _failed
                           ▼                          ▼                      ▼
                        failed ◄───────────────────────────────────── activating (or failed)
                                                                             │ switched
                                                                             ▼
    committed ◄──probation_passed── probation ──probation_failed──► rolling_back ──► rolled_back
        │                              ▲  │                              ▲
        └──────rollback_requested──────┘  └───────rollback_requested────┘

    any resting state ──already_serving──► committed (an assignment of the version it serves)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from edge_sdk.core.wire.protocol import RESTING_STATES, UpdateState

# The state names are the wire contract's (edge_sdk.core.wire.protocol): the fleet reads them in
# every device's status.
State = UpdateState


class Event(enum.StrEnum):
    ASSIGNED = "assigned"
    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    SELFTEST_PASSED = "selftest_passed"
    SELFTEST_FAILED = "selftest_failed"
    SWITCHED = "switched"
    PROBATION_PASSED = "probation_passed"
    PROBATION_FAILED = "probation_failed"
    ROLLBACK_REQUESTED = "rollback_requested"
    ROLLED_BACK = "rolled_back"
    ERROR = "error"
    CRASH_LOOP = "crash_loop"
    # Reported, never fired: an assignment turned down before any update started (older than
    # the anti-rollback floor), so the state does not change.
    REFUSED = "refused"
    # An assignment of the version already serving (verified): nothing to install, but the
    # assignment is acknowledged, committed under its serial, so a rollout of it ends at once.
    ALREADY_SERVING = "already_serving"


# States in which no update is in flight: a new assignment may start one.
RESTING = RESTING_STATES
# States after the `current` pointer may already name the new version: undoing them means
# switching back, not just deleting files.
SWITCHED = frozenset({State.ACTIVATING, State.PROBATION})

TRANSITIONS: dict[tuple[State, Event], State] = {
    **{(s, Event.ASSIGNED): State.DOWNLOADING for s in RESTING},
    **{(s, Event.ALREADY_SERVING): State.COMMITTED for s in RESTING},
    (State.DOWNLOADING, Event.DOWNLOADED): State.VERIFYING,
    (State.DOWNLOADING, Event.ERROR): State.FAILED,
    (State.DOWNLOADING, Event.CRASH_LOOP): State.FAILED,
    (State.VERIFYING, Event.VERIFIED): State.STAGED,
    (State.VERIFYING, Event.ERROR): State.FAILED,
    (State.VERIFYING, Event.CRASH_LOOP): State.FAILED,
    (State.STAGED, Event.SELFTEST_PASSED): State.ACTIVATING,
    (State.STAGED, Event.SELFTEST_FAILED): State.FAILED,
    (State.STAGED, Event.ERROR): State.FAILED,
    (State.STAGED, Event.CRASH_LOOP): State.FAILED,
    (State.ACTIVATING, Event.SWITCHED): State.PROBATION,
    (State.ACTIVATING, Event.ERROR): State.ROLLING_BACK,
    (State.ACTIVATING, Event.SELFTEST_FAILED): State.ROLLING_BACK,
    (State.ACTIVATING, Event.CRASH_LOOP): State.ROLLING_BACK,
    (State.PROBATION, Event.PROBATION_PASSED): State.COMMITTED,
    (State.PROBATION, Event.PROBATION_FAILED): State.ROLLING_BACK,
    (State.PROBATION, Event.SELFTEST_FAILED): State.ROLLING_BACK,
    (State.PROBATION, Event.CRASH_LOOP): State.ROLLING_BACK,
    (State.PROBATION, Event.ROLLBACK_REQUESTED): State.ROLLING_BACK,
    (State.COMMITTED, Event.ROLLBACK_REQUESTED): State.ROLLING_BACK,
    (State.ROLLED_BACK, Event.ROLLBACK_REQUESTED): State.ROLLING_BACK,
    (State.FAILED, Event.ROLLBACK_REQUESTED): State.ROLLING_BACK,
    (State.IDLE, Event.ROLLBACK_REQUESTED): State.ROLLING_BACK,
    (State.ROLLING_BACK, Event.ROLLED_BACK): State.ROLLED_BACK,
}


class IllegalTransition(RuntimeError):
    """A programming error: the daemon fired an event the table does not allow."""


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"no transition from {state} on {event}") from None


@dataclass(frozen=True)
class Journal:
    """One model's update record, persisted before every step.

    ``version`` is the version being installed (or rolled back to), ``previous`` what ran
    before it; ``restarts`` counts agent starts that found this update in flight, which is how
    a crash loop is recognised.
    """

    model: str
    state: State = State.IDLE
    version: int | None = None
    previous: int | None = None
    serial: int = 0  # the assignment that started this update
    allow_downgrade: bool = False
    restarts: int = 0
    reason: str = ""
    floor: int = 0  # anti-rollback: the highest version ever committed
    rollback_to: int | None = None  # while rolling back: the version to return to
    since: float = 0.0  # when the current state began (wall clock, seconds)
    history: tuple[dict[str, Any], ...] = field(default=())

    def advance(self, event: Event, *, now: float, reason: str = "", **changes: Any) -> Journal:
        """The journal after ``event``: new state by the table, plus any field changes."""
        state = next_state(self.state, event)
        entry = {"from": str(self.state), "event": str(event), "to": str(state), "at": now}
        if reason:
            entry["reason"] = reason
        history = (*self.history, entry)[-HISTORY_KEPT:]
        restarts = self.restarts if state not in RESTING else 0
        # A reason belongs to one update: carried along while it is in flight, not into the next.
        carried = self.reason if self.state not in RESTING else ""
        return replace(
            self,
            state=state,
            since=now,
            reason=reason or carried,
            history=history,
            restarts=restarts,
            **changes,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "state": str(self.state),
            "version": self.version,
            "previous": self.previous,
            "serial": self.serial,
            "allow_downgrade": self.allow_downgrade,
            "restarts": self.restarts,
            "reason": self.reason,
            "floor": self.floor,
            "rollback_to": self.rollback_to,
            "since": self.since,
            "history": list(self.history),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Journal:
        def optional_int(key: str) -> int | None:
            value = doc.get(key)
            return None if value is None else int(value)

        return cls(
            model=str(doc["model"]),
            state=State(doc["state"]),
            version=optional_int("version"),
            previous=optional_int("previous"),
            serial=int(doc.get("serial", 0)),
            allow_downgrade=bool(doc.get("allow_downgrade", False)),
            restarts=int(doc.get("restarts", 0)),
            reason=str(doc.get("reason", "")),
            floor=int(doc.get("floor", 0)),
            rollback_to=optional_int("rollback_to"),
            since=float(doc.get("since", 0.0)),
            history=tuple(dict(h) for h in doc.get("history", [])),
        )


HISTORY_KEPT = 20


class Resume(enum.StrEnum):
    """What the daemon does first after a restart."""

    NOTHING = "nothing"  # resting: serve `current`
    DOWNLOAD = "download"  # resume the download; verified chunks are kept
    VERIFY = "verify"  # files may be half assembled: assemble and verify again
    SELFTEST = "selftest"  # staged: the test may have been cut short, run it again
    SWITCH = "switch"  # activating: `current` may name either version; test the new, switch
    PROBATION = "probation"  # re-check the running version, restart the window
    ROLLBACK = "rollback"  # finish switching back to `previous`
    GIVE_UP = "give_up"  # crash loop before the switch: fail, `current` never changed


_RESUME = {
    State.DOWNLOADING: Resume.DOWNLOAD,
    State.VERIFYING: Resume.VERIFY,
    State.STAGED: Resume.SELFTEST,
    State.ACTIVATING: Resume.SWITCH,
    State.PROBATION: Resume.PROBATION,
    State.ROLLING_BACK: Resume.ROLLBACK,
}


def recover(journal: Journal, max_restarts: int) -> tuple[Resume, Journal]:
    """Decide how to continue after the agent (re)started with ``journal`` on disk.

    Returns the action and the journal to persist *before* taking it: an in-flight update
    has its restart counted, and once it has been interrupted ``max_restarts`` times it is a
    crash loop, which fails the update (before the switch) or rolls it back (after).
    """
    if journal.state in RESTING:
        return Resume.NOTHING, journal
    if journal.state is State.ROLLING_BACK:
        return Resume.ROLLBACK, journal  # already undoing: always finish it
    counted = replace(journal, restarts=journal.restarts + 1)
    if counted.restarts > max_restarts:
        reason = (
            f"crash loop: the agent restarted {counted.restarts} times during {journal.state} "
            f"of version {journal.version}"
        )
        # The event is fired by the daemon when it acts; the journal only records the count
        # and the reason now, so a cut during the give-up or rollback is itself recoverable.
        action = Resume.ROLLBACK if journal.state in SWITCHED else Resume.GIVE_UP
        return action, replace(counted, reason=reason)
    return _RESUME[journal.state], counted
