"""The assignment serial floor: the highest serial accepted per scope and model, kept on disk.

Desired state is a retained MQTT message, so whoever can put an older, validly signed
assignment back on the broker (a superseded rollback, an older version) could move a device
backwards after a restart if the floor lived only in memory. The floor is written atomically to
the state directory *before* the agent acts on an assignment, and :func:`judge` decides every
later one against it.
"""

from __future__ import annotations

import enum
import json
import logging
from pathlib import Path

from edge_sdk.core.atomic import write_bytes_atomic

log = logging.getLogger(__name__)
FILE = "assignment-serials.json"
_MAX_FILE_BYTES = 1 << 20  # a few scopes and models: far less; more is not our file


class Verdict(enum.Enum):
    NEW = "new"  # above the floor: record it, then act on it
    SEEN = "seen"  # equal to the floor: the retained copy of what was accepted; not a refusal
    REPLAY = "replay"  # below the floor: an older assignment put back; refuse and report


def judge(serial: int, floor: int) -> Verdict:
    """The pure decision: how an assignment with ``serial`` stands against ``floor``."""
    if serial > floor:
        return Verdict.NEW
    if serial == floor:
        return Verdict.SEEN
    return Verdict.REPLAY


def _parse(data: bytes) -> dict[str, dict[str, int]]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("floors"), dict):
        raise ValueError("no 'floors' object")
    floors: dict[str, dict[str, int]] = {}
    for scope, models in doc["floors"].items():
        if not isinstance(models, dict):
            raise ValueError(f"scope {scope!r} is not an object")
        for model, serial in models.items():
            if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
                raise ValueError(f"serial of {scope}/{model} is not a natural number")
            floors.setdefault(scope, {})[model] = serial
    return floors


class SerialFloors:
    """``floor(scope, model)`` and ``record(scope, model, serial)``; the file is the truth.

    ``fallback`` gives a floor per model for when the file is unreadable (damaged disk, a hand
    edit): the agent then refuses anything older than what its journals last acted on, in every
    scope, rather than accept replays until the file is written again.
    """

    def __init__(self, state_dir: Path, fallback: dict[str, int]) -> None:
        self.path = state_dir / FILE
        self._fallback: dict[str, int] = {}
        self.problem = ""
        self._floors: dict[str, dict[str, int]] = {}
        try:
            data = self.path.read_bytes() if self.path.is_file() else b'{"floors": {}}'
            if len(data) > _MAX_FILE_BYTES:
                raise ValueError(f"{len(data)} bytes")
            self._floors = _parse(data)
        except (OSError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            self.problem = (
                f"{self.path} is unreadable ({e}); refusing assignments older than the ones "
                "last acted on until it is written again"
            )
            log.warning("%s", self.problem)
            self._fallback = dict(fallback)

    def floor(self, scope: str, model: str) -> int:
        return self._floors.get(scope, {}).get(model, self._fallback.get(model, 0))

    def record(self, scope: str, model: str, serial: int) -> None:
        """Persist ``serial`` as the floor (atomically, fsynced), then remember it. An
        ``OSError`` or ``OutputError`` leaves both the file and the memory as they were."""
        floors = {s: dict(m) for s, m in self._floors.items()}
        floors.setdefault(scope, {})[model] = serial
        body = json.dumps({"floors": floors}, sort_keys=True, indent=1).encode()
        write_bytes_atomic(self.path, body, 0o640)
        self._floors = floors
