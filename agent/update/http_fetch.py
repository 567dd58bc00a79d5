"""Chunks from HTTP(S) mirrors: the artifact stores the signed metadata names.

A mirror is a base URL (``https://cdn.example/fleet/chunks/``); a chunk is ``BASE + sha256``.
Nothing a mirror sends is trusted: each body is read up to the chunk's signed length (one byte
more tells an oversized one), and :func:`agent.update.transfer.chunk_problem` checks it against its
signed sha256 exactly as a chunk from the broker. So a hostile or broken store can waste time,
never install anything.

Standard library only (``http.client`` and ``ssl``): the device install stays light. Each worker
thread keeps one keep-alive connection per mirror; a few chunks are fetched in parallel; every
read has a timeout; transient failures (connection refused or reset, timeouts, 5xx, 429) are
retried with backoff, and a mirror that keeps failing is skipped for the rest of the download.

The parsing of what a server sends (:func:`read_body`) is pure over a response object, so the
fuzz tests drive it with arbitrary bytes.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from edge_sdk.errors import ConfigError

MAX_MIRRORS = 8
MAX_MIRROR_URL = 512
# Statuses worth asking the same mirror again (later); any other non-200 moves to the next one.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_READ_BLOCK = 64 << 10
# A chunk's GET may take timeout_s plus its length at this rate: a server trickling a byte
# now and then (never silent for timeout_s) still cannot hold a worker for ever.
MIN_BYTES_PER_S = 16 << 10


class FetchProblem(Exception):
    """One GET that did not give a usable chunk. ``transient``: the same mirror may succeed
    if asked again; otherwise (404, wrong bytes, 403) ask another source."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Response(Protocol):
    status: int

    def getheader(self, name: str) -> str | None: ...

    def read1(self, amt: int) -> bytes: ...


def read_body(
    response: Response,
    length: int,
    deadline: float = float("inf"),
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """The body of a chunk's GET, refused unless it is a 200 of exactly ``length`` bytes.

    Reads at most ``length + 1`` bytes whatever the server claims, so an oversized or endless
    body costs one block of memory, never more, and gives up at ``deadline`` (``clock()``
    time). Pure over ``response``: any server's answer ends in bytes or a
    :class:`FetchProblem`.
    """
    status = response.status
    if status != 200:
        raise FetchProblem(
            f"HTTP {status}", transient=status in _TRANSIENT_STATUS or not 100 <= status <= 599
        )
    declared = response.getheader("Content-Length")
    if declared is not None:
        declared = declared.strip()
        if not declared.isdigit() or int(declared) != length:
            raise FetchProblem(
                f"Content-Length {declared[:20]!r}, the chunk is {length} bytes", transient=False
            )
    parts: list[bytes] = []
    got = 0
    while got <= length:
        if clock() > deadline:
            raise FetchProblem(f"too slow: {got} of {length} bytes in time", transient=True)
        # read1: one read from the socket at most, so the deadline is checked between reads.
        block = response.read1(min(_READ_BLOCK, length + 1 - got))
        if not block:
            break
        parts.append(block)
        got += len(block)
    if got > length:
        raise FetchProblem(f"body over the chunk's {length} bytes", transient=False)
    if got < length:
        # A body cut short: the connection dropped mid-way (a broken store, not a lie).
        raise FetchProblem(f"body ended after {got} of {length} bytes", transient=True)
    return b"".join(parts)


def check_mirror(url: str) -> str:
    """A mirror base URL as the agent uses it (ends in '/'); ``ValueError`` names the problem.
    Pure: what the signed metadata lists ends here."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_MIRROR_URL or not url.isascii():
        raise ValueError(f"a mirror must be an http(s) URL of at most {MAX_MIRROR_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"mirror {url[:80]!r} is not a URL ({e})") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"mirror {url[:80]!r} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"mirror {url[:80]!r} carries credentials")
    if parts.query or parts.fragment or port == 0 or any(c in url for c in " \t\r\n\\"):
        raise ValueError(f"mirror {url[:80]!r} has a query, fragment, port 0 or whitespace")
    return url if url.endswith("/") else url + "/"


def parse_mirrors(raw: object) -> tuple[str, ...]:
    """The signed ``mirrors`` entry of a release: a list of base URLs, in the order to try."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_MIRRORS:
        raise ValueError(f"the mirror list must be a list of at most {MAX_MIRRORS} URLs")
    mirrors = tuple(check_mirror(u) for u in raw)
    if len(set(mirrors)) != len(mirrors):
        raise ValueError("the mirror list names a mirror twice")
    return mirrors


@dataclass(frozen=True)
class HttpSettings:
    """``[store]`` in agent.toml."""

    ca: Path | None = None  # PEM bundle for HTTPS mirrors; None: the system CA store
    connections: int = 4  # chunks fetched in parallel
    timeout_s: float = 10.0  # per connect and per read
    tries: int = 3  # per chunk and mirror, for transient failures
    backoff_s: float = 0.5  # first pause between tries, doubled each time
    fallback: bool = True  # fetch from the broker what no mirror delivered


def ssl_context(ca: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"store.ca {ca}: cannot load it as PEM certificates ({e})") from e


@dataclass
class _Mirror:
    base: str
    failures: int = 0  # consecutive transient failures across chunks
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Got:
    sha: str
    data: bytes | None
    source: str  # the mirror's base URL, or "" when none delivered
    problems: tuple[str, ...]


class HttpFetcher:
    """Fetch chunks from ``mirrors`` in order, verifying each with ``check``."""

    def __init__(
        self,
        mirrors: Iterable[str],
        settings: HttpSettings,
        check: Callable[[str, int, bytes], str | None],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.mirrors = [_Mirror(m) for m in mirrors]
        self.settings = settings
        self.check = check
        self.sleep = sleep
        self._context = ssl_context(settings.ca)
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.cancelled = threading.Event()

    def fetch(self, wanted: Iterable[tuple[str, int]]) -> Iterator[Got]:
        """One :class:`Got` per chunk, as they complete; the caller stores the good ones.

        At most ``2 * connections`` chunks are asked for or waiting for the caller at once, so
        a slow chunk never makes the others pile up in memory."""
        todo = deque(wanted)
        if not todo:
            return
        workers = max(1, min(self.settings.connections, len(todo)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chunk-http")
        pending: set[Future[Got]] = set()
        try:
            while todo or pending:
                while todo and len(pending) < 2 * workers:
                    sha, n = todo.popleft()
                    pending.add(pool.submit(self._one, sha, n))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            self.cancelled.set()  # workers stop between tries; queued chunks are dropped
            pool.shutdown(wait=True, cancel_futures=True)
            self.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def _one(self, sha: str, length: int) -> Got:
        problems: list[str] = []
        for mirror in self.mirrors:
            tries = self.settings.tries
            for attempt in range(tries):
                if self.cancelled.is_set() or mirror.failures >= tries:
                    break  # a mirror failing chunk after chunk is down for this download
                try:
                    data = self._get(mirror.base, sha, length)
                except FetchProblem as e:
                    problems.append(f"{mirror.base}: {e}")
                    if not e.transient:
                        break
                    with mirror.lock:
                        mirror.failures += 1
                    if attempt + 1 < tries:
                        self.sleep(self.settings.backoff_s * 2**attempt)
                    continue
                with mirror.lock:
                    mirror.failures = 0
                problem = self.check(sha, length, data)
                if problem is None:
                    return Got(sha, data, mirror.base, tuple(problems))
                problems.append(f"{mirror.base}: {problem}")
                break  # this mirror serves wrong bytes for it: another source
        return Got(sha, None, "", tuple(problems))

    def _connection(self, base: str) -> tuple[http.client.HTTPConnection, str]:
        conns: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        parts = urlsplit(base)
        conn = conns.get(base)
        if conn is None:
            host, port = parts.hostname or "", parts.port
            timeout = self.settings.timeout_s
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=self._context
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conns[base] = conn
            with self._lock:
                self._connections.append(conn)
        return conn, parts.path

    def _get(self, base: str, sha: str, length: int) -> bytes:
        conn, path = self._connection(base)
        try:
            conn.request("GET", path + sha, headers={"Accept-Encoding": "identity"})
            response = conn.getresponse()
            deadline = time.monotonic() + self.settings.timeout_s + length / MIN_BYTES_PER_S
            try:
                data = read_body(response, length, deadline)
            finally:
                if response.will_close or response.status != 200:
                    conn.close()  # the next request opens a fresh connection
            if not response.isclosed():
                if response.length == 0:
                    response.read()  # nothing left: marks the response done, keeps the link
                else:
                    conn.close()
            return data
        except FetchProblem:
            conn.close()
            raise
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise FetchProblem(
                f"TLS certificate refused ({e.verify_message})", transient=False
            ) from e
        except (OSError, http.client.HTTPException, ValueError) as e:
            conn.close()
            raise FetchProblem(f"{type(e).__name__}: {e}"[:200], transient=True) from e
