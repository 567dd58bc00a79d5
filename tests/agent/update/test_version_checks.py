"""Whether an installed version may serve (agent.update.version_checks): only one whose files
still verify is loaded; one changed on disk is a failed check, never an exception."""

from __future__ import annotations

from pathlib import Path

from agent.update.version_checks import VersionChecks
from tests.agent.update.stand_in import installed


def test_only_a_version_whose_files_still_verify_serves(tmp_path: Path, signing_keys: Path) -> None:
    device = installed(tmp_path, signing_keys, [1], current=1)
    checks = VersionChecks(device.device, device.model, device.store)  # type: ignore[arg-type]
    checks.load_current()
    assert checks.slot.version == 1 and checks.served_trust() == (False, "")

    device.damage(1)
    after = VersionChecks(device.device, device.model, device.store)  # type: ignore[arg-type]
    after.load_current()
    assert after.slot.loaded is None  # nothing serves rather than a changed model
    loaded, problem = after._checked(1)
    assert loaded is None and problem and "\n" not in problem
