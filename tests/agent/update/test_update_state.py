"""One model's update record (agent.update.update_state): every event is persisted before
anything acts on it, and an update that comes to rest leaves its outcome for the status."""

from __future__ import annotations

from pathlib import Path

from agent.update.machine import Event, State
from agent.update.update_state import Outcome, UpdaterState
from tests.agent.update.stand_in import installed


def test_each_event_is_on_disk_and_the_resting_one_leaves_its_outcome(
    tmp_path: Path, signing_keys: Path
) -> None:
    device = installed(tmp_path, signing_keys, [1], current=1)
    update = UpdaterState(device.device, device.model, device.store)  # type: ignore[arg-type]
    assert not update.in_flight and update.outcome is None
    update._fire(Event.ASSIGNED, serial=3, version=2, previous=1)
    assert update.in_flight and update.outcome is None
    assert device.store.load_journal() == update.journal  # persisted before anything acts
    assert update.journal.state is State.DOWNLOADING
    update._fire(Event.ERROR, "v2 is not published")
    assert device.store.load_journal().state is State.FAILED
    assert update.outcome == Outcome(2, "failed", "v2 is not published", 1000.0)
    assert update.outcome.to_json()["result"] == "failed"
    assert device.device.events == [Event.ASSIGNED, Event.ERROR]
