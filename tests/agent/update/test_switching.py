"""Rolling back (agent.update.switching): to the previous version when it still verifies, and
never to one that does not: the device then stays on what it serves and says why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agent.update.machine import State
from agent.update.switching import SwitchSteps
from tests.agent.update.stand_in import Installed, installed


def rolling_back(device: Installed) -> SwitchSteps:
    """v2 serving and failed in probation: the journal says roll back to v1."""
    journal = device.store.load_journal()
    device.store.save_journal(
        replace(
            journal,
            state=State.ROLLING_BACK,
            version=2,
            previous=1,
            rollback_to=1,
            serial=4,
            reason="probation of v2 failed",
        )
    )
    steps = SwitchSteps(device.device, device.model, device.store)  # type: ignore[arg-type]
    steps.load_current()
    assert steps.slot.version == 2
    return steps


def test_a_rollback_switches_back_to_the_previous_version(
    tmp_path: Path, signing_keys: Path
) -> None:
    device = installed(tmp_path, signing_keys, [1, 2], current=2)
    steps = rolling_back(device)
    steps._roll_back()
    assert steps.slot.version == 1 and device.store.current() == 1
    assert steps.journal.state is State.ROLLED_BACK
    assert steps.outcome is not None and steps.outcome.result == "rolled_back"


def test_a_rollback_target_that_no_longer_verifies_is_refused(
    tmp_path: Path, signing_keys: Path
) -> None:
    device = installed(tmp_path, signing_keys, [1, 2], current=2)
    device.damage(1)
    steps = rolling_back(device)
    steps._roll_back()
    assert steps.slot.version == 2 and device.store.current() == 2
    assert steps.journal.state is State.ROLLED_BACK and steps.journal.version == 2
    assert "rollback to v1 refused" in steps.journal.reason
    assert steps.journal.reason.endswith("staying on v2")
