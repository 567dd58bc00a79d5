"""The update state machine: the transition table, the journal, and what to do after a restart."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agent.update.machine import (
    HISTORY_KEPT,
    RESTING,
    TRANSITIONS,
    Event,
    IllegalTransition,
    Journal,
    Resume,
    State,
    next_state,
    recover,
)

S, E = State, Event

# The table as the module docstring draws it, written out independently of TRANSITIONS.
EXPECTED: dict[tuple[State, Event], State] = {
    (S.IDLE, E.ASSIGNED): S.DOWNLOADING,
    (S.COMMITTED, E.ASSIGNED): S.DOWNLOADING,
    (S.ROLLED_BACK, E.ASSIGNED): S.DOWNLOADING,
    (S.FAILED, E.ASSIGNED): S.DOWNLOADING,
    (S.IDLE, E.ALREADY_SERVING): S.COMMITTED,
    (S.COMMITTED, E.ALREADY_SERVING): S.COMMITTED,
    (S.ROLLED_BACK, E.ALREADY_SERVING): S.COMMITTED,
    (S.FAILED, E.ALREADY_SERVING): S.COMMITTED,
    (S.DOWNLOADING, E.DOWNLOADED): S.VERIFYING,
    (S.DOWNLOADING, E.ERROR): S.FAILED,
    (S.DOWNLOADING, E.CRASH_LOOP): S.FAILED,
    (S.VERIFYING, E.VERIFIED): S.STAGED,
    (S.VERIFYING, E.ERROR): S.FAILED,
    (S.VERIFYING, E.CRASH_LOOP): S.FAILED,
    (S.STAGED, E.SELFTEST_PASSED): S.ACTIVATING,
    (S.STAGED, E.SELFTEST_FAILED): S.FAILED,
    (S.STAGED, E.ERROR): S.FAILED,
    (S.STAGED, E.CRASH_LOOP): S.FAILED,
    (S.ACTIVATING, E.SWITCHED): S.PROBATION,
    (S.ACTIVATING, E.ERROR): S.ROLLING_BACK,
    (S.ACTIVATING, E.SELFTEST_FAILED): S.ROLLING_BACK,
    (S.ACTIVATING, E.CRASH_LOOP): S.ROLLING_BACK,
    (S.PROBATION, E.PROBATION_PASSED): S.COMMITTED,
    (S.PROBATION, E.PROBATION_FAILED): S.ROLLING_BACK,
    (S.PROBATION, E.SELFTEST_FAILED): S.ROLLING_BACK,
    (S.PROBATION, E.CRASH_LOOP): S.ROLLING_BACK,
    (S.PROBATION, E.ROLLBACK_REQUESTED): S.ROLLING_BACK,
    (S.COMMITTED, E.ROLLBACK_REQUESTED): S.ROLLING_BACK,
    (S.ROLLED_BACK, E.ROLLBACK_REQUESTED): S.ROLLING_BACK,
    (S.FAILED, E.ROLLBACK_REQUESTED): S.ROLLING_BACK,
    (S.IDLE, E.ROLLBACK_REQUESTED): S.ROLLING_BACK,
    (S.ROLLING_BACK, E.ROLLED_BACK): S.ROLLED_BACK,
}

IN_FLIGHT = [s for s in State if s not in RESTING]
BEFORE_SWITCH = [S.DOWNLOADING, S.VERIFYING, S.STAGED]
AFTER_SWITCH = [S.ACTIVATING, S.PROBATION]
RESUME_OF = {
    S.DOWNLOADING: Resume.DOWNLOAD,
    S.VERIFYING: Resume.VERIFY,
    S.STAGED: Resume.SELFTEST,
    S.ACTIVATING: Resume.SWITCH,
    S.PROBATION: Resume.PROBATION,
}


# -- the transition table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "target"), [(s, e, t) for (s, e), t in EXPECTED.items()]
)
def test_every_listed_transition(state: State, event: Event, target: State) -> None:
    assert next_state(state, event) is target


def test_the_table_has_no_transitions_beyond_the_listed_ones() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.IDLE, E.DOWNLOADED),
        (S.IDLE, E.SWITCHED),
        (S.IDLE, E.ERROR),
        (S.DOWNLOADING, E.VERIFIED),
        (S.DOWNLOADING, E.ROLLBACK_REQUESTED),
        (S.VERIFYING, E.SWITCHED),
        (S.STAGED, E.PROBATION_PASSED),
        (S.STAGED, E.ROLLBACK_REQUESTED),
        (S.PROBATION, E.ALREADY_SERVING),
        (S.ACTIVATING, E.PROBATION_PASSED),
        (S.PROBATION, E.ERROR),
        (S.COMMITTED, E.PROBATION_PASSED),
        (S.COMMITTED, E.ERROR),
        (S.FAILED, E.CRASH_LOOP),
        (S.ROLLING_BACK, E.ERROR),
        (S.ROLLING_BACK, E.ROLLBACK_REQUESTED),
        (S.ROLLED_BACK, E.ROLLED_BACK),
    ],
)
def test_illegal_pairs_raise(state: State, event: Event) -> None:
    with pytest.raises(IllegalTransition) as err:
        next_state(state, event)
    assert str(state) in str(err.value) and str(event) in str(err.value)


@pytest.mark.parametrize("state", sorted(RESTING))
def test_resting_states_accept_a_new_assignment(state: State) -> None:
    assert next_state(state, E.ASSIGNED) is S.DOWNLOADING


@pytest.mark.parametrize("state", IN_FLIGHT)
def test_an_update_in_flight_refuses_a_second_assignment(state: State) -> None:
    with pytest.raises(IllegalTransition):
        next_state(state, E.ASSIGNED)


def test_resting_is_exactly_the_states_where_no_update_is_in_flight() -> None:
    assert {S.IDLE, S.COMMITTED, S.ROLLED_BACK, S.FAILED} == RESTING


@pytest.mark.parametrize("state", BEFORE_SWITCH)
def test_before_the_switch_errors_and_crash_loops_fail(state: State) -> None:
    assert next_state(state, E.ERROR) is S.FAILED
    assert next_state(state, E.CRASH_LOOP) is S.FAILED


@pytest.mark.parametrize("state", AFTER_SWITCH)
def test_after_the_switch_a_crash_loop_rolls_back(state: State) -> None:
    assert next_state(state, E.CRASH_LOOP) is S.ROLLING_BACK
    assert next_state(state, E.SELFTEST_FAILED) is S.ROLLING_BACK


def test_rolling_back_ends_in_rolled_back() -> None:
    assert next_state(S.ROLLING_BACK, E.ROLLED_BACK) is S.ROLLED_BACK


@pytest.mark.parametrize("state", IN_FLIGHT)
def test_every_state_in_flight_can_reach_a_resting_state(state: State) -> None:
    seen = {state}
    frontier = [state]
    while frontier:
        current = frontier.pop()
        for (source, _event), target in TRANSITIONS.items():
            if source is current and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen & RESTING


@pytest.mark.parametrize("state", IN_FLIGHT)
def test_every_state_in_flight_has_a_failure_exit(state: State) -> None:
    exits = {e for (s, e) in TRANSITIONS if s is state}
    assert exits & {E.ERROR, E.CRASH_LOOP, E.ROLLED_BACK}


# -- Journal.advance ---------------------------------------------------------------------------


def test_advance_applies_the_table_time_and_changes() -> None:
    start = Journal("digits")
    j = start.advance(E.ASSIGNED, now=12.5, version=3, previous=2, serial=7)
    assert j.state is S.DOWNLOADING
    assert (j.version, j.previous, j.serial, j.since) == (3, 2, 7, 12.5)
    assert j.model == "digits"
    assert start.state is S.IDLE and start.history == ()  # frozen: a new journal is returned
    assert j.history == ({"from": "idle", "event": "assigned", "to": "downloading", "at": 12.5},)


def test_advance_records_the_reason_in_history_only_when_given() -> None:
    j = Journal("m").advance(E.ASSIGNED, now=1.0).advance(E.ERROR, now=2.0, reason="no space")
    assert "reason" not in j.history[0]
    assert j.history[1] == {
        "from": "downloading",
        "event": "error",
        "to": "failed",
        "at": 2.0,
        "reason": "no space",
    }


def test_advance_refuses_an_illegal_event() -> None:
    with pytest.raises(IllegalTransition):
        Journal("m").advance(E.SWITCHED, now=1.0)


def test_history_is_capped_at_history_kept() -> None:
    j = Journal("m")
    steps = 0
    while steps < HISTORY_KEPT + 7:
        j = j.advance(E.ASSIGNED, now=float(steps))
        j = j.advance(E.ERROR, now=float(steps + 1))
        steps += 2
    assert len(j.history) == HISTORY_KEPT
    # The newest entries are kept, the oldest dropped.
    assert j.history[-1]["at"] == float(steps - 1)
    assert j.history[0]["at"] == float(steps - HISTORY_KEPT)


def test_reason_is_carried_within_an_update() -> None:
    j = Journal("m").advance(E.ASSIGNED, now=1.0, reason="assigned v3")
    assert j.reason == "assigned v3"
    j = j.advance(E.DOWNLOADED, now=2.0)
    assert j.reason == "assigned v3"
    j = j.advance(E.ERROR, now=3.0, reason="hash mismatch")
    assert (j.state, j.reason) == (S.FAILED, "hash mismatch")


def test_reason_is_carried_into_the_resting_state_that_ends_the_update() -> None:
    j = Journal("m").advance(E.ASSIGNED, now=1.0, reason="why it failed")
    j = j.advance(E.ERROR, now=2.0)
    assert (j.state, j.reason) == (S.FAILED, "why it failed")


def test_reason_is_not_carried_into_the_next_update() -> None:
    failed = Journal("m", state=S.FAILED, reason="the last update failed")
    assert failed.advance(E.ASSIGNED, now=1.0).reason == ""
    committed = Journal("m", state=S.COMMITTED, reason="old")
    assert committed.advance(E.ROLLBACK_REQUESTED, now=1.0).reason == ""
    assert committed.advance(E.ROLLBACK_REQUESTED, now=1.0, reason="new").reason == "new"


def test_restarts_are_kept_in_flight_and_reset_when_resting() -> None:
    j = Journal("m", state=S.DOWNLOADING, restarts=2)
    assert j.advance(E.DOWNLOADED, now=1.0).restarts == 2
    assert j.advance(E.ERROR, now=1.0).restarts == 0
    probation = Journal("m", state=S.PROBATION, restarts=3)
    assert probation.advance(E.PROBATION_PASSED, now=1.0).restarts == 0
    rolling = Journal("m", state=S.ROLLING_BACK, restarts=4)
    assert rolling.advance(E.ROLLED_BACK, now=1.0).restarts == 0


# -- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rollback_to", [None, 4])
def test_json_round_trip(rollback_to: int | None) -> None:
    j = (
        Journal("digits", floor=4, allow_downgrade=True)
        .advance(E.ASSIGNED, now=1.0, version=5, previous=4, serial=9)
        .advance(E.DOWNLOADED, now=2.0, reason="fetched")
    )
    j = replace(j, restarts=2, rollback_to=rollback_to)
    doc = j.to_json()
    assert doc["state"] == "verifying"
    assert doc["rollback_to"] == rollback_to
    back = Journal.from_json(json.loads(json.dumps(doc)))
    assert back == j
    assert isinstance(back.state, State)
    assert isinstance(back.history, tuple)


def test_from_json_fills_defaults_for_a_minimal_document() -> None:
    j = Journal.from_json({"model": "m", "state": "committed"})
    assert j == Journal("m", state=S.COMMITTED)
    assert j.version is None and j.previous is None and j.rollback_to is None


def test_from_json_refuses_an_unknown_state() -> None:
    with pytest.raises(ValueError):
        Journal.from_json({"model": "m", "state": "exploded"})


# -- recover -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(RESTING))
def test_recover_resting_does_nothing(state: State) -> None:
    j = Journal("m", state=state, version=3, restarts=0, reason="r")
    action, after = recover(j, max_restarts=3)
    assert action is Resume.NOTHING
    assert after == j


@pytest.mark.parametrize("state", list(RESUME_OF))
def test_recover_in_flight_resumes_and_counts_the_restart(state: State) -> None:
    j = Journal("m", state=state, version=3, previous=2, restarts=1, reason="in progress")
    action, after = recover(j, max_restarts=3)
    assert action is RESUME_OF[state]
    assert after == replace(j, restarts=2)
    assert j.restarts == 1  # the input journal is untouched


@pytest.mark.parametrize("state", list(RESUME_OF))
def test_recover_at_exactly_max_restarts_still_resumes(state: State) -> None:
    action, after = recover(Journal("m", state=state, version=3, restarts=2), max_restarts=3)
    assert action is RESUME_OF[state]
    assert after.restarts == 3


@pytest.mark.parametrize("state", BEFORE_SWITCH)
def test_crash_loop_before_the_switch_gives_up(state: State) -> None:
    j = Journal("m", state=state, version=7, previous=6, restarts=3)
    action, after = recover(j, max_restarts=3)
    assert action is Resume.GIVE_UP
    assert after.restarts == 4
    assert after.state is state  # the daemon fires the event when it acts
    assert "crash loop" in after.reason
    assert "4" in after.reason and "7" in after.reason and str(state) in after.reason
    # What the daemon then fires is legal and fails the update.
    assert next_state(after.state, E.CRASH_LOOP) is S.FAILED


@pytest.mark.parametrize("state", AFTER_SWITCH)
def test_crash_loop_after_the_switch_rolls_back(state: State) -> None:
    j = Journal("m", state=state, version=7, previous=6, restarts=5)
    action, after = recover(j, max_restarts=5)
    assert action is Resume.ROLLBACK
    assert after.restarts == 6
    assert "crash loop" in after.reason
    assert next_state(after.state, E.CRASH_LOOP) is S.ROLLING_BACK


@pytest.mark.parametrize("restarts", [0, 3, 100])
def test_rolling_back_always_finishes_without_counting(restarts: int) -> None:
    j = Journal("m", state=S.ROLLING_BACK, version=2, rollback_to=2, restarts=restarts)
    action, after = recover(j, max_restarts=3)
    assert action is Resume.ROLLBACK
    assert after == j
    assert after.restarts == restarts


def test_repeated_recovery_ends_in_a_crash_loop() -> None:
    j = Journal("m", state=S.VERIFYING, version=2)
    actions = []
    for _ in range(4):
        action, j = recover(j, max_restarts=3)
        actions.append(action)
    assert actions == [Resume.VERIFY, Resume.VERIFY, Resume.VERIFY, Resume.GIVE_UP]
