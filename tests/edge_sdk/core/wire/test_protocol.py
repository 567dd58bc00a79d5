"""The wire contract (``edge_sdk.core.wire.protocol``): what the agent writes with it, the fleet
reads
back equal; its names are the ones the agent's update machine uses; and the fields it writes are
the ones docs/protocol.md §6 documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agent.update.machine import RESTING, TRANSITIONS, State
from edge_sdk.core.wire.protocol import (
    RESTING_STATES,
    Figures,
    LastResult,
    ModelStatus,
    Probation,
    SourceTally,
    StatusDocument,
    TransferReport,
    UpdateResult,
    UpdateState,
    parse_presence,
    presence_payload,
    result_of,
)

PROTOCOL = Path(__file__).resolve().parents[4] / "docs" / "protocol.md"

# What the agent writes: printable text (the fleet replaces control characters), identifiers
# for names, non-negative 64-bit integers, finite numbers.
texts = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30)
names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
counts = st.integers(min_value=0, max_value=2**63 - 1)
numbers = st.floats(allow_nan=False, allow_infinity=False)
figures = st.builds(Figures, counts, counts, numbers, numbers, numbers)
models = st.builds(
    ModelStatus,
    version=st.none() | counts,
    state=st.sampled_from(UpdateState),
    signed_by_revoked_key=st.booleans(),
    trust_note=texts,
    target_version=st.none() | counts,
    serial=counts,
    floor=counts,
    reason=texts,
    last_result=st.none()
    | st.builds(LastResult, st.none() | counts, st.sampled_from(UpdateResult), texts, numbers),
    last_transfer=st.none()
    | st.builds(
        TransferReport,
        counts,
        counts,
        counts,
        counts,
        counts,
        st.dictionaries(texts, st.builds(SourceTally, counts, counts), max_size=3),
    ),
    inference=figures,
    probation=st.none() | st.builds(Probation, figures, st.none() | figures),
)
documents = st.builds(
    StatusDocument,
    device=names,
    fleet=names,
    group=names,
    profile=names,
    agent_version=texts,
    uptime_s=numbers,
    cpu_percent=numbers,
    memory_rss_bytes=counts,
    disk_free_bytes=counts,
    assignment_error=texts,
    bench_job=st.none() | texts,
    models=st.dictionaries(names, models, max_size=3),
    at=texts,
)


@given(documents)
def test_what_the_agent_writes_the_fleet_reads_back_equal(document: StatusDocument) -> None:
    assert StatusDocument.parse(document.encode()) == document


@given(documents)
def test_the_payload_is_sorted_compact_json_of_to_json(document: StatusDocument) -> None:
    payload = document.encode()
    compact = json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    assert payload == compact
    assert json.loads(payload) == json.loads(json.dumps(document.to_json()))


def test_presence_round_trips() -> None:
    assert presence_payload(True) == b'{"online": true}'
    assert presence_payload(False) == b'{"online": false}'
    assert parse_presence(presence_payload(True)) is True
    assert parse_presence(presence_payload(False)) is False


def test_the_agents_machine_uses_the_protocols_state_names() -> None:
    assert State is UpdateState and RESTING == RESTING_STATES
    used = {s for pair, to in TRANSITIONS.items() for s in (pair[0], to)}
    assert used == set(UpdateState)  # every state a device can report is reachable or left


def test_a_resting_state_names_its_result() -> None:
    results = {state: result_of(state) for state in RESTING_STATES}
    assert results == {
        UpdateState.IDLE: UpdateResult.FAILED,
        UpdateState.COMMITTED: UpdateResult.COMMITTED,
        UpdateState.ROLLED_BACK: UpdateResult.ROLLED_BACK,
        UpdateState.FAILED: UpdateResult.FAILED,
    }


def _documented_fields() -> set[str]:
    text = PROTOCOL.read_text()
    section = text[text.index("### Status (`devices/<id>/status`") :]
    section = section[: section.index("\n### ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z_.<>]+)`", row.split("|")[1])}


def test_the_documented_fields_are_the_ones_written() -> None:
    model = ModelStatus(version=None, state=UpdateState.IDLE)
    written = set(StatusDocument("dev-1", models={"m": model}).to_json()) - {"models"}
    written |= {f"models.<name>.{key}" for key in model.to_json()}
    # bench_job is documented with the benchmark jobs (§11), which put it there.
    assert "status (§6) carries `bench_job`" in PROTOCOL.read_text()
    assert _documented_fields() | {"bench_job"} == written
