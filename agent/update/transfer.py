"""Moving a release onto the device: fetch only the chunks the device does not hold (from
the release's HTTP(S) mirrors, then the broker over MQTT), check each on arrival, assemble the
files and check those.

What a chunk must be (its sha256 and length) comes from the signed release
(``agent.update.release``); this module refuses anything that does not match it, and checks
before reading that every chunk could reach the device at all.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.mqtt_link import MqttLink
from agent.update.chunk_cache import ChunkCache, ChunkRef
from agent.update.http_fetch import HttpFetcher, HttpSettings
from agent.update.release import Release, unique_chunks, version_text
from agent.update.state_files import write_failure
from edge_sdk.core.atomic import atomic_writer
from edge_sdk.core.wire.topics import Topics
from edge_sdk.errors import (
    EdgeSdkError,
    NotDeliveredError,
    OutputError,
    OversizeError,
    TamperedError,
    TransferError,
)

log = logging.getLogger(__name__)
BATCH = 16  # chunks read with one SUBSCRIBE / UNSUBSCRIBE pair
BATCHES_IN_FLIGHT = 2  # keeps the link busy while the previous batch is checked and stored
MAX_CHUNK_TRIES = 3  # a chunk that fails its check is fetched at most this often per attempt
_PUBLISH_OVERHEAD = 64  # PUBLISH fixed header, topic length and properties, beyond the topic
BROKER = "broker"  # the source name of chunks read from the broker, in TransferStats.sources


@dataclass(frozen=True)
class TransferStats:
    chunks: int
    fetched: int
    fetched_bytes: int
    cached: int  # already in the chunk cache (a resumed download)
    reused: int  # held by an installed version
    # Where the fetched chunks came from: a mirror's base URL or "broker" -> (chunks, bytes).
    sources: tuple[tuple[str, int, int], ...] = ()


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
        where = f"{release.name} {version_text(release.version)}"
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
