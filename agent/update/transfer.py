"""Moving a release onto the device: read what the signed metadata promises, fetch only the
chunks the device does not hold, check each on arrival, assemble the files and check those.

Nothing here decides trust on its own: sizes, names and hashes all come from targets metadata
that python-tuf has verified (``agent.update.tuf_mqtt``); this module refuses anything that does not
match them, and every size is checked against the device's caps *before* a byte is fetched.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.mqtt_link import MqttLink
from agent.update.http_fetch import HttpFetcher, HttpSettings, parse_mirrors
from agent.update.store import ChunkCache, ChunkRef, write_failure
from agent.update.tuf_mqtt import TufSession
from edge_sdk.core.atomic import atomic_writer
from edge_sdk.core.bundle import (
    ARTIFACT_NAMES,
    GOLDEN,
    MANIFEST,
    MAX_METADATA_BYTES,
    SIGNATURES,
    format_version,
)
from edge_sdk.core.topics import Topics
from edge_sdk.errors import (
    EdgeSdkError,
    NotDeliveredError,
    OutputError,
    OversizeError,
    TamperedError,
    TransferError,
    UpdateError,
    WrongTargetError,
)

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
ALLOWED_FILES = frozenset({MANIFEST, GOLDEN, SIGNATURES, *ARTIFACT_NAMES.values()})
BATCH = 16  # chunks read with one SUBSCRIBE / UNSUBSCRIBE pair
BATCHES_IN_FLIGHT = 2  # keeps the link busy while the previous batch is checked and stored
MAX_CHUNK_TRIES = 3  # a chunk that fails its check is fetched at most this often per attempt
_PUBLISH_OVERHEAD = 64  # PUBLISH fixed header, topic length and properties, beyond the topic
MIRRORS = "mirrors"  # the manifest target's custom key naming the release's HTTP(S) mirrors
BROKER = "broker"  # the source name of chunks read from the broker, in TransferStats.sources


def target_path(model: str, version: int, file: str, profile: str | None = None) -> str:
    """A release file's target: ``<model>/<version>/<file>`` for a release's first variant,
    ``<model>/<version>/<profile>/<file>`` for each further profile's
    (edge_sdk.signing.repository)."""
    if profile is None:
        return f"{model}/{version}/{file}"
    return f"{model}/{version}/{profile}/{file}"


@dataclass(frozen=True)
class FileSpec:
    name: str
    length: int
    sha256: str
    chunks: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Release:
    name: str
    version: int
    profile: str
    runtime: str
    files: tuple[FileSpec, ...]
    # HTTP(S) base URLs the signed release names for its chunks, in the order to try them
    # (agent.update.http_fetch); empty: the broker is the only source.
    mirrors: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.length for f in self.files)

    def chunk_index(self) -> dict[str, list[list[Any]]]:
        return {f.name: [[sha, n] for sha, n in f.chunks] for f in self.files}


@dataclass(frozen=True)
class Limits:
    max_chunk_bytes: int
    max_artifact_bytes: int


@dataclass(frozen=True)
class TransferStats:
    chunks: int
    fetched: int
    fetched_bytes: int
    cached: int  # already in the chunk cache (a resumed download)
    reused: int  # held by an installed version
    # Where the fetched chunks came from: a mirror's base URL or "broker" -> (chunks, bytes).
    sources: tuple[tuple[str, int, int], ...] = ()


def _file_spec(
    session: TufSession,
    model: str,
    version: int,
    name: str,
    limits: Limits,
    variant: str | None = None,
) -> FileSpec:
    info = session.target(target_path(model, version, name, variant))
    if info is None:
        raise TamperedError(
            f"release {model} {_v(version)} lists {name} but the metadata has no such target"
        )
    cap = limits.max_artifact_bytes if name in ARTIFACT_NAMES.values() else MAX_METADATA_BYTES
    if info.length > cap:
        raise OversizeError(
            f"{name} of {model} {_v(version)} is {info.length} bytes, over this device's cap "
            f"of {cap}"
        )
    sha = info.hashes.get("sha256", "")
    custom = info.custom if isinstance(info.custom, dict) else {}
    raw = custom.get("chunks")
    if not _SHA256.match(sha) or not isinstance(raw, list):
        raise TamperedError(
            f"{name} of {model} {_v(version)} has no sha256 or chunk list in its metadata"
        )
    chunks: list[tuple[str, int]] = []
    for entry in raw:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and _SHA256.match(entry[0])
            and type(entry[1]) is int  # not a bool, which JSON's true would give
        ):
            raise TamperedError(f"{name} of {model} {_v(version)} has a malformed chunk entry")
        if not 0 < entry[1] <= limits.max_chunk_bytes:
            raise OversizeError(
                f"a chunk of {name} is {entry[1]} bytes, over this device's cap of "
                f"{limits.max_chunk_bytes}"
            )
        chunks.append((entry[0], entry[1]))
    if sum(n for _, n in chunks) != info.length:
        raise TamperedError(f"the chunks of {name} do not add up to its signed length")
    return FileSpec(name, info.length, sha, tuple(chunks))


def read_release(
    session: TufSession,
    model: str,
    version: int,
    *,
    profile: str,
    runtime: str,
    limits: Limits,
) -> Release:
    """The signed description of this device's variant of the release, refused before any
    download if it is for another model, version, profile or runtime, lists unexpected files,
    or is bigger than the caps.

    A release holds a variant per profile: this device's own profile directory is looked up
    first, then the release's first variant (the only one a release published before variants
    existed has), whose record must then name this device's profile."""
    variant: str | None = profile
    info = session.target(target_path(model, version, MANIFEST, profile))
    if info is None:
        variant, info = None, session.target(target_path(model, version, MANIFEST))
    if info is None:
        raise UpdateError(f"{model} {_v(version)} is not published in the fleet repository")
    custom = info.custom if isinstance(info.custom, dict) else {}
    doc = custom.get("release")
    if not isinstance(doc, dict):
        raise TamperedError(f"{model} {_v(version)}: the manifest target carries no release record")
    if doc.get("name") != model or type(doc.get("version")) is not int or doc["version"] != version:
        raise WrongTargetError(
            f"release record names {doc.get('name')} v{doc.get('version')}, not "
            f"{model} {_v(version)}"
        )
    if doc.get("profile") != profile:
        raise WrongTargetError(
            f"{model} {_v(version)} is built for profile {doc.get('profile')!r}, this device is "
            f"{profile!r}; publish a build for {profile}"
        )
    if doc.get("runtime") != runtime:
        raise WrongTargetError(
            f"{model} {_v(version)} needs runtime {doc.get('runtime')!r}, this device runs "
            f"{runtime!r}"
        )
    names = doc.get("files")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TamperedError(f"{model} {_v(version)}: the release record has no file list")
    unexpected = sorted(set(names) - ALLOWED_FILES)
    if unexpected or len(set(names)) != len(names) or MANIFEST not in names or GOLDEN not in names:
        raise TamperedError(f"{model} {_v(version)}: unexpected file list {names}")
    files = tuple(_file_spec(session, model, version, n, limits, variant) for n in names)
    try:
        mirrors = parse_mirrors(custom.get(MIRRORS))
    except ValueError as e:
        raise TamperedError(
            f"{model} {_v(version)}: the signed mirror list is malformed ({e}); publish it again "
            "with valid --store-url values"
        ) from e
    return Release(model, version, profile, runtime, files, mirrors)


def unique_chunks(release: Release) -> dict[str, int]:
    chunks: dict[str, int] = {}
    for f in release.files:
        for sha, n in f.chunks:
            chunks[sha] = n
    return chunks


def fetch_chunks(
    release: Release,
    link: MqttLink,
    topics: Topics,
    cache: ChunkCache,
    local: Mapping[str, ChunkRef],
    *,
    timeout: float,
    on_chunk: Callable[[int], None] = lambda _: None,
) -> TransferStats:
    """Fetch every chunk neither cached nor held locally, in batches read with one SUBSCRIBE
    each, ``BATCHES_IN_FLIGHT`` batches at a time.

    Each chunk is checked against its signed sha256 and length before it is stored, and a
    resumed download checks what the cache holds again (it is not fsynced), so only whole,
    verified chunks are ever assembled. Progress counts: every verified chunk that arrived is
    stored, even when another read of the same batches fails, and a chunk that fails its
    check is fetched again (``MAX_CHUNK_TRIES`` in all) while the verified ones are kept.
    ``timeout`` is the silence a read tolerates (see ``MqttLink.finish_read``), not a budget
    for a batch. ``on_chunk(n)`` is called after the n-th stored chunk (progress, and the test
    crash hook).

    Raises ``TransferError`` (broker away or silent: retry), ``NotDeliveredError`` (the
    broker answered without a chunk the metadata names: bounded retries, agent.update.updater) or
    ``TamperedError`` / ``OversizeError`` (final).
    """
    wanted = unique_chunks(release)
    cached = [s for s, n in wanted.items() if cache.has(s) and cache.verified(s, n)]
    reused = [s for s in wanted if s not in cached and s in local]
    missing = [s for s in wanted if s not in cached and s not in local]
    for sha in missing:
        check_deliverable(topics.chunk(sha), wanted[sha], link.max_packet_bytes)
    to_read = list(missing)
    tries: dict[str, int] = {}
    in_flight: deque[list[tuple[str, Any]]] = deque()
    failure: EdgeSdkError | None = None
    fetched_bytes = stored = 0
    while in_flight or (to_read and failure is None):
        while failure is None and to_read and len(in_flight) < BATCHES_IN_FLIGHT:
            batch, to_read = to_read[:BATCH], to_read[BATCH:]
            reads = link.start_reads([topics.chunk(sha) for sha in batch])
            in_flight.append(list(zip(batch, reads, strict=True)))
        for sha, read in in_flight.popleft():
            if failure is not None and not link.answered(read):
                link.cancel(read)  # keep what already arrived, wait for nothing more
                continue
            try:
                payload = link.finish_read(read, timeout)
            except TransferError as e:
                failure = failure or e
                continue
            problem = chunk_problem(sha, wanted[sha], payload, link.max_packet_bytes)
            if problem is not None:
                tries[sha] = tries.get(sha, 0) + 1
                if payload is None:
                    failure = failure or NotDeliveredError(problem)
                elif tries[sha] >= MAX_CHUNK_TRIES:
                    failure = failure or TamperedError(f"{problem} ({tries[sha]} tries)")
                else:
                    to_read.append(sha)  # fetch it again in a later batch
                continue
            assert payload is not None
            cache.put(sha, payload)
            fetched_bytes += len(payload)
            stored += 1
            on_chunk(stored)
    if failure is not None:
        raise failure
    sources = ((BROKER, len(missing), fetched_bytes),) if missing else ()
    return TransferStats(
        len(wanted), len(missing), fetched_bytes, len(cached), len(reused), sources
    )


def fetch_release(
    release: Release,
    link: MqttLink,
    topics: Topics,
    cache: ChunkCache,
    local: Mapping[str, ChunkRef],
    *,
    timeout: float,
    http: HttpSettings | None,
    on_chunk: Callable[[int], None] = lambda _: None,
) -> TransferStats:
    """Fetch the chunks the device lacks from the release's signed HTTP(S) mirrors (in
    order; ``agent.update.http_fetch``), then from the broker whatever no mirror delivered, when
    ``http.fallback`` allows it. Without mirrors (or ``http`` None) it is :func:`fetch_chunks`.

    Every chunk from a mirror passes :func:`chunk_problem` before it is stored, as one from
    the broker does; verified chunks are kept whatever happens next, so a download cut short
    (a store stopped mid-way) resumes with what is missing. With the fallback off, chunks no
    mirror delivered raise ``TransferError`` (retried later, nothing installed).
    """
    wanted = unique_chunks(release)
    if not release.mirrors or http is None:
        return fetch_chunks(release, link, topics, cache, local, timeout=timeout, on_chunk=on_chunk)
    cached = [s for s, n in wanted.items() if cache.has(s) and cache.verified(s, n)]
    reused = [s for s in wanted if s not in cached and s in local]
    missing = [s for s in wanted if s not in cached and s not in local]
    max_packet = link.max_packet_bytes
    fetcher = HttpFetcher(
        release.mirrors, http, lambda sha, n, data: chunk_problem(sha, n, data, max_packet)
    )
    per_source: dict[str, list[int]] = {}
    left: list[str] = []
    problems: list[str] = []
    stored = 0
    for got in fetcher.fetch((sha, wanted[sha]) for sha in missing):
        if got.data is None:
            left.append(got.sha)
            problems.extend(got.problems[-1:])
            continue
        cache.put(got.sha, got.data)
        counts = per_source.setdefault(got.source, [0, 0])
        counts[0] += 1
        counts[1] += len(got.data)
        stored += 1
        on_chunk(stored)
    sources = [(src, n, b) for src, (n, b) in per_source.items()]
    fetched_bytes = sum(b for _, _, b in sources)
    if left:
        where = f"{release.name} {_v(release.version)}"
        if not http.fallback:
            raise TransferError(
                f"{len(left)} chunk(s) of {where} came from no mirror ({problems[0]}) and "
                "store.fallback is off; retrying later"
            )
        log.warning(
            "%s: %d chunk(s) came from no mirror (%s); fetching them from the broker",
            where,
            len(left),
            problems[0],
        )
        from_broker = fetch_chunks(
            release,
            link,
            topics,
            cache,
            local,
            timeout=timeout,
            on_chunk=lambda n: on_chunk(stored + n),
        )
        sources.extend(from_broker.sources)
        fetched_bytes += from_broker.fetched_bytes
    return TransferStats(
        len(wanted), len(missing), fetched_bytes, len(cached), len(reused), tuple(sources)
    )


def check_deliverable(topic: str, length: int, max_packet: int) -> None:
    """Refuse, before reading, a chunk whose message could never pass this link's Maximum
    Packet Size: the broker would drop it and the read would wait for nothing."""
    if length + len(topic.encode()) + _PUBLISH_OVERHEAD > max_packet:
        raise OversizeError(
            f"a {length}-byte chunk cannot reach this device: its message is over the "
            f"{max_packet}-byte maximum packet size the agent announces; raise "
            "limits.max_chunk_bytes or publish with smaller chunks"
        )


def chunk_problem(sha: str, length: int, payload: bytes | None, max_packet: int) -> str | None:
    """Why ``payload`` is not the chunk the signed metadata names (``None``: it is). Pure:
    what a broker or anyone who can publish to the chunk topic sends ends here."""
    if payload is None:
        return (
            f"chunk {sha[:12]} was not delivered: the broker holds no message for it, or one "
            f"over this device's {max_packet}-byte maximum packet size, which it drops"
        )
    if len(payload) != length or hashlib.sha256(payload).hexdigest() != sha:
        return (
            f"chunk {sha[:12]} does not match its signed sha256 and length: it was "
            "changed in transit or on the broker; not installed"
        )
    return None


def chunk_source(cache: ChunkCache, local: Mapping[str, ChunkRef]) -> Callable[[str], bytes]:
    def read(sha: str) -> bytes:
        if cache.has(sha):
            return cache.path(sha).read_bytes()
        return local[sha].read()

    return read


def assemble(release: Release, staging: Path, read_chunk: Callable[[str], bytes]) -> None:
    """Write each file from its chunks and check it against its signed length and sha256."""
    for spec in release.files:
        digest, length = hashlib.sha256(), 0
        target = staging / spec.name
        try:
            with atomic_writer(target, 0o640) as handle:
                for sha, n in spec.chunks:
                    # Chunks were checked on arrival; the whole file's signed hash below
                    # catches any local copy damaged since.
                    data = read_chunk(sha)
                    if len(data) != n:
                        raise TamperedError(f"local copy of a chunk of {spec.name} is damaged")
                    digest.update(data)
                    length += n
                    handle.write(data)
                if length != spec.length or digest.hexdigest() != spec.sha256:
                    raise TamperedError(
                        f"{spec.name} assembled from its chunks does not match its signed sha256"
                    )
        except (OSError, OutputError) as e:
            raise write_failure(e, target) from e


def bytes_needed(release: Release, have: Iterable[str]) -> int:
    """Disk this update takes at its peak: chunks still to fetch plus the assembled files."""
    held = set(have)
    return (
        sum(n for sha, n in unique_chunks(release).items() if sha not in held) + release.total_bytes
    )


def _v(version: int) -> str:
    """A version as its user wrote it (v1.2.0), from the integer a message has at hand."""
    return f"v{format_version(version)}"
