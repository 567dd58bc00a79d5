"""Which chunks one broker has acknowledged, so ``fleet publish`` resumes instead of restarting.

One small JSON file per (broker, topic root) in the repository directory:
``<repo>/published/<sha256 of "<broker url> <topic root>">.json``. A chunk is recorded only
after the broker's PUBACK for it, and a chunk is forgotten *before* its retained message is
cleared, so the ledger may under-claim (a chunk is sent again: harmless, chunks are
content-addressed and idempotent) but never over-claims while the broker keeps its retained
store. A broker that lost its store (restarted without persistence) makes the ledger wrong;
``fleet publish --full`` forgets it and sends everything again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from edge_sdk.core.atomic import write_bytes_atomic

LEDGER_DIR = "published"
_FORMAT = 1


def ledger_path(repo_dir: Path, broker_url: str, topic_root: str) -> Path:
    key = hashlib.sha256(f"{broker_url} {topic_root}".encode()).hexdigest()
    return repo_dir / LEDGER_DIR / f"{key}.json"


class PublishLedger:
    """The acknowledged chunk set of one broker, saved atomically on ``save()``.

    Mutable on purpose: it grows as PUBACKs arrive during one publish.
    """

    def __init__(self, path: Path, broker_url: str, topic_root: str, *, fresh: bool = False):
        self.path = path
        self._broker = broker_url
        self._topic = topic_root
        # ``fresh`` (--full) ignores what the file says: the broker may have lost it all.
        self._acked: set[str] = set() if fresh else _load(path)

    @classmethod
    def for_broker(
        cls, repo_dir: Path, broker_url: str, topic_root: str, *, fresh: bool = False
    ) -> PublishLedger:
        return cls(
            ledger_path(repo_dir, broker_url, topic_root), broker_url, topic_root, fresh=fresh
        )

    def __contains__(self, sha: object) -> bool:
        return sha in self._acked

    def __len__(self) -> int:
        return len(self._acked)

    def record(self, shas: Iterable[str]) -> None:
        self._acked.update(shas)

    def forget(self, shas: Iterable[str]) -> None:
        self._acked.difference_update(shas)

    def save(self) -> None:
        doc = {
            "format": _FORMAT,
            "broker": self._broker,
            "topic": self._topic,
            "chunks": sorted(self._acked),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, json.dumps(doc, indent=0).encode() + b"\n")


def _load(path: Path) -> set[str]:
    """The recorded chunks; an unreadable ledger counts as empty (everything is sent again,
    which is always safe)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        return set()
    chunks = doc.get("chunks")
    if not isinstance(chunks, list):
        return set()
    return {c for c in chunks if isinstance(c, str)}
