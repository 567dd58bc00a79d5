"""Operator actions on the fleet: publish a bundle into the repository and onto the broker,
and assign a version to a device or a group. The CLI in ``edge_sdk.cli.fleet_publish_cmd`` is a
thin layer over these and ``edge_sdk.fleet.publish_service``."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.bundle import Bundle, format_version
from edge_sdk.core.trust import add_signatures, sign_files, verify_bundle
from edge_sdk.core.wire.assignment import Assignment, sign_assignment
from edge_sdk.core.wire.topics import Topics
from edge_sdk.errors import InputError, ThresholdError, TrustError
from edge_sdk.fleet.publish_ledger import PublishLedger
from edge_sdk.fleet.session import OperatorLink
from edge_sdk.fleet.stores import Store, UploadResult
from edge_sdk.signing.keys import ROOT_JSON, load_trust_root
from edge_sdk.signing.repository import PublishSet, Repository, online_signers

ASSIGNMENT_DAYS = 365  # desired state is long-lived; freshness comes from TUF's timestamp
_SERIAL_FILE = "assignment-serial.json"


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: int
    chunks: int
    chunk_bytes: int
    metadata_files: int
    sent_chunks: int
    skipped_chunks: int
    sent_bytes: int
    # With a store (fleet publish --store): chunks uploaded / already there, and the mirrors
    # the signed metadata now names for the release.
    store_sent_chunks: int = 0
    store_skipped_chunks: int = 0
    store_sent_bytes: int = 0
    mirrors: tuple[str, ...] = ()


BUNDLE_SIGNATURE_DAYS = 365


def signed_for_fleet(bundle: Bundle, keyring: Path) -> tuple[Bundle, int]:
    """``bundle`` as the fleet's devices will accept it, and how many signatures were added.

    An unsigned build is signed with the keyring's online targets keys, and one signed below
    the root's threshold gets theirs added. Anything else that does not verify against the
    fleet's root (an unknown key, expired or tampered signatures) is refused here, once, rather
    than by every device after the download.
    """
    trust = load_trust_root(keyring / ROOT_JSON)
    signers = online_signers(keyring, trust.root)["targets"]
    added = 0
    if bundle.signatures is None:
        signatures = sign_files(
            bundle.signed_files(),
            signers,
            expires=datetime.now(UTC) + timedelta(days=BUNDLE_SIGNATURE_DAYS),
            custom=bundle.manifest.identity(),
        )
        bundle, added = bundle.with_signatures(signatures), len(signers)
    else:
        try:
            verify_bundle(trust, bundle, "bundle")
        except ThresholdError:
            bundle = bundle.with_signatures(add_signatures(bundle.signatures, signers))
            added = len(signers)
        except TrustError:
            pass  # reported below, with advice for publishing
    try:
        verify_bundle(trust, bundle, "bundle")
    except TrustError as e:
        what = str(e).split("; ")[0]  # the advice that follows is verify's, not publish's
        raise type(e)(
            f"the fleet's devices would refuse this bundle: {what}; sign it with this fleet's "
            "online keys (`edge-sdk sign BUNDLE --key KEYS/online-1.key`) or rebuild it"
        ) from e
    return bundle, added


def open_or_create(repo: Path, keyring: Path) -> Repository:
    if (repo / "metadata" / "timestamp.json").is_file():
        return Repository.open(repo, keyring)
    return Repository.create(repo, keyring)


@dataclass(frozen=True)
class SendProgress:
    """Chunks (and their bytes) the broker has acknowledged so far in one ``send``."""

    chunks_done: int
    chunks_total: int
    bytes_done: int
    bytes_total: int


@dataclass(frozen=True)
class SendResult:
    sent_chunks: int
    skipped_chunks: int  # already acknowledged by this broker, per the ledger
    sent_bytes: int


# The ledger is saved after this many PUBACKs: an interrupted publish re-sends at most this
# many acknowledged chunks, and a large release does not rewrite the file for every chunk.
LEDGER_BATCH = 64


def send(
    link: OperatorLink,
    topics: Topics,
    changes: PublishSet,
    progress: Callable[[SendProgress], None] | None = None,
    *,
    ledger: PublishLedger | None = None,
) -> SendResult:
    """Chunks first, then metadata with timestamp.json last: a device that sees the new
    timestamp finds everything it points to already on the broker.

    With a ``ledger``, chunks it records are skipped and acknowledged ones are recorded as
    their PUBACKs arrive, so a publish cut short resumes where it stopped. Metadata is always
    sent whole: it is small, and the timestamp must come after the chunks on every run.
    """
    link.wait()  # anything published earlier is not ours to count
    done_before = ledger if ledger is not None else frozenset[str]()
    todo = [(sha, data) for sha, data in changes.chunks.items() if sha not in done_before]
    offsets = list(itertools.accumulate((len(data) for _, data in todo), initial=0))
    for sha, data in todo:
        link.publish(topics.chunk(sha), data)
    saved = 0

    def save(done: int) -> None:
        nonlocal saved
        if ledger is not None and done > saved:
            ledger.record(sha for sha, _ in todo[saved:done])
            ledger.save()
            saved = done

    acked = 0

    def on_ack(done: int, total: int) -> None:
        nonlocal acked
        # OperatorLink.wait reports in publish order: ``done`` is a prefix of ``todo``.
        acked = done
        if done % LEDGER_BATCH == 0:
            save(done)
        if progress is not None:
            progress(SendProgress(done, total, offsets[done], offsets[-1]))

    try:
        link.wait(on_ack)
    finally:
        save(acked)  # also on Ctrl-C or a lost broker: what was acknowledged stays recorded
    for name, data in changes.metadata.items():
        link.publish(topics.metadata_file(name), data)
    for name in changes.removed_metadata:
        link.publish(topics.metadata_file(name), b"")  # an empty retained message clears it
    if ledger is not None and changes.removed_chunks:
        # Forgotten before they are cleared: the ledger must never claim a chunk that is gone.
        ledger.forget(changes.removed_chunks)
        ledger.save()
    for sha in changes.removed_chunks:
        link.publish(topics.chunk(sha), b"")
    link.wait()
    return SendResult(len(todo), len(changes.chunks) - len(todo), offsets[-1])


def publish_bundle(
    bundle: Bundle,
    repo: Repository,
    link: OperatorLink,
    topics: Topics,
    *,
    expires: datetime | None = None,
    progress: Callable[[SendProgress], None] | None = None,
    ledger: PublishLedger | None = None,
    store: Store | None = None,
    mirrors: Sequence[str] = (),
    broker_chunks: bool = True,
) -> PublishResult:
    """Add ``bundle`` to the repository and put it on the broker. Safe to repeat: adding the
    same release again changes nothing, and every message is retained and idempotent. Without
    a ``ledger`` every chunk is sent; with one, only those this broker has not acknowledged.

    With a ``store``, the chunks go there first, then ``mirrors`` (the public base URLs devices
    fetch them from, in order) are signed into the release's metadata; the broker still gets
    the chunks as the devices' fallback source unless ``broker_chunks`` is False. Metadata is
    sent last, so no device learns of a mirror before its chunks are there."""
    uploaded = UploadResult(0, 0, 0)
    if store is not None:
        # Before the repository changes: a store that fails leaves no release behind whose
        # chunks are nowhere (a later publish would otherwise send its metadata).
        uploaded = store.upload(repo.chunks_of(bundle))
    changes = repo.add_bundle(bundle, expires=expires)
    chunks = changes.chunks or repo.chunks_of(bundle)
    removed = changes.removed_metadata
    m = bundle.manifest
    if store is not None:
        pruned = repo.set_mirrors(m.name, m.version, list(mirrors), expires=expires)
        removed = tuple(dict.fromkeys((*removed, *(pruned or ()))))
    everything = PublishSet(
        metadata=repo.metadata_files(),
        chunks=chunks if broker_chunks else {},
        removed_metadata=removed,
    )
    sent = send(link, topics, everything, progress, ledger=ledger)
    return PublishResult(
        m.name,
        m.version,
        len(chunks),
        sum(len(c) for c in chunks.values()),
        len(everything.metadata),
        sent.sent_chunks,
        sent.skipped_chunks,
        sent.sent_bytes,
        uploaded.sent_chunks,
        uploaded.skipped_chunks,
        uploaded.sent_bytes,
        tuple(mirrors) if store is not None else (),
    )


def next_serial(repo_dir: Path) -> int:
    """Assignment serials only grow: wall-clock milliseconds, and past the last one used."""
    path = repo_dir / _SERIAL_FILE
    repo_dir.mkdir(parents=True, exist_ok=True)
    last = json.loads(path.read_bytes())["serial"] if path.exists() else 0
    serial = max(int(time.time() * 1000), int(last) + 1)
    write_bytes_atomic(path, json.dumps({"serial": serial}).encode())
    return serial


def publish_assignments(
    keyring: Path,
    link: OperatorLink,
    topics: Topics,
    *,
    model: str,
    serial: int,
    orders: Sequence[tuple[str, int, bool]],
    expires: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Sign and publish (retained) one assignment per ``(scope, version, rollback)``, all with
    ``serial``: a rollout's wave is one decision, and publishing it again (a resumed rollout)
    is a duplicate every device ignores."""
    when = expires or datetime.now(UTC) + timedelta(days=ASSIGNMENT_DAYS)
    signers = online_signers(keyring, load_trust_root(keyring / ROOT_JSON).root)["targets"]
    for scope, version, rollback in orders:
        payload = sign_assignment(
            Assignment(model, version, scope, serial, rollback), signers, expires=when
        )
        link.publish(_desired_topic(topics, scope, model), payload)
    link.wait(progress)


def _desired_topic(topics: Topics, scope: str, model: str) -> str:
    kind, who = scope.split("/", 1)
    if kind == "devices":
        return topics.desired_device(who, model)
    return topics.desired_group(who, model)


def check_published(repo: Repository, model: str, version: int) -> None:
    if repo.release_variants(model, version):
        return
    held = [v for name, v in repo.releases() if name == model]
    listed = ", ".join(format_version(v) for v in held[-5:]) if held else "none"
    raise InputError(
        f"{model} {format_version(version)} is not published in {repo.directory} (it holds "
        f"{listed}); `edge-sdk fleet publish` its bundle first, or check the version"
    )


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
    """Sign and publish (retained) the desired version of ``model`` for ``scope``.

    Only a version the repository holds: a device assigned any other would fail its update
    later, far from the operator who mistyped it."""
    check_published(Repository.open(repo_dir, keyring), model, version)
    assignment = Assignment(model, version, scope, next_serial(repo_dir), rollback)
    orders = [(scope, version, rollback)]
    serial = assignment.serial
    publish_assignments(
        keyring, link, topics, model=model, serial=serial, orders=orders, expires=expires
    )
    return assignment
