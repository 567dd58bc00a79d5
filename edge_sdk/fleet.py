"""Operator actions on the fleet: publish a bundle into the repository and onto the broker,
and assign a version to a device or a group. The CLI in ``edge_sdk.cli.fleet_cmd`` is a thin
layer over these."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_sdk.assignment import Assignment, sign_assignment
from edge_sdk.atomic import write_bytes_atomic
from edge_sdk.bundle import Bundle
from edge_sdk.keys import ROOT_JSON, load_trust_root
from edge_sdk.operator_link import OperatorLink
from edge_sdk.repository import PublishSet, Repository, online_signers
from edge_sdk.topics import Topics

ASSIGNMENT_DAYS = 365  # desired state is long-lived; freshness comes from TUF's timestamp
_SERIAL_FILE = "assignment-serial.json"


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: int
    chunks: int
    chunk_bytes: int
    metadata_files: int


def open_or_create(repo: Path, keyring: Path) -> Repository:
    if (repo / "metadata" / "timestamp.json").is_file():
        return Repository.open(repo, keyring)
    return Repository.create(repo, keyring)


def send(
    link: OperatorLink,
    topics: Topics,
    changes: PublishSet,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Chunks first, then metadata with timestamp.json last: a device that sees the new
    timestamp finds everything it points to already on the broker."""
    for sha, data in changes.chunks.items():
        link.publish(topics.chunk(sha), data)
    link.wait(progress)
    for name, data in changes.metadata.items():
        link.publish(topics.metadata_file(name), data)
    for name in changes.removed_metadata:
        link.publish(topics.metadata_file(name), b"")  # an empty retained message clears it
    for sha in changes.removed_chunks:
        link.publish(topics.chunk(sha), b"")
    link.wait()


def publish_bundle(
    bundle: Bundle,
    repo: Repository,
    link: OperatorLink,
    topics: Topics,
    *,
    expires: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PublishResult:
    """Add ``bundle`` to the repository and put it on the broker. Safe to repeat: adding the
    same release again changes nothing, and every message is retained and idempotent."""
    changes = repo.add_bundle(bundle, expires=expires)
    everything = PublishSet(
        metadata=repo.metadata_files(),
        chunks=changes.chunks or repo.chunks_of(bundle),
        removed_metadata=changes.removed_metadata,
    )
    send(link, topics, everything, progress)
    m = bundle.manifest
    return PublishResult(
        m.name,
        m.version,
        len(everything.chunks),
        sum(len(c) for c in everything.chunks.values()),
        len(everything.metadata),
    )


def next_serial(repo_dir: Path) -> int:
    """Assignment serials only grow: wall-clock milliseconds, and past the last one used."""
    path = repo_dir / _SERIAL_FILE
    repo_dir.mkdir(parents=True, exist_ok=True)
    last = json.loads(path.read_bytes())["serial"] if path.exists() else 0
    serial = max(int(time.time() * 1000), int(last) + 1)
    write_bytes_atomic(path, json.dumps({"serial": serial}).encode())
    return serial


def assign(
    keyring: Path,
    repo_dir: Path,
    link: OperatorLink,
    topics: Topics,
    *,
    model: str,
    version: int,
    scope: str,
    rollback: bool = False,
    expires: datetime | None = None,
) -> Assignment:
    """Sign and publish (retained) the desired version of ``model`` for ``scope``."""
    assignment = Assignment(model, version, scope, next_serial(repo_dir), rollback)
    when = expires or datetime.now(UTC) + timedelta(days=ASSIGNMENT_DAYS)
    signers = online_signers(keyring, load_trust_root(keyring / ROOT_JSON).root)["targets"]
    payload = sign_assignment(assignment, signers, expires=when)
    kind, who = scope.split("/", 1)
    topic = (
        topics.desired_device(who, model) if kind == "devices" else topics.desired_group(who, model)
    )
    link.publish(topic, payload)
    link.wait()
    return assignment
