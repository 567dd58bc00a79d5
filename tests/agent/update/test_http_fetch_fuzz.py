"""What an HTTP(S) store and the signed metadata can send the agent's chunk fetcher: status
lines, lengths and bodies (``agent.update.http_fetch.read_body`` behind http.client's parser, and a
real socket server answering with arbitrary bytes), and mirror lists. Only the exact chunk is
ever accepted; everything else is a ``FetchProblem`` (or a ``ValueError`` for a mirror list,
which ``agent.update.transfer`` turns into a TamperedError), never another exception, and memory
stays
bounded whatever length a server claims."""

from __future__ import annotations

import hashlib
import http.client
import io
import socket
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.update.http_fetch import (
    MAX_MIRRORS,
    FetchProblem,
    HttpFetcher,
    HttpSettings,
    check_mirror,
    parse_mirrors,
    read_body,
)
from agent.update.transfer import chunk_problem
from tests.fuzz import mutations

CHUNK = bytes(range(256)) * 16  # 4 KiB
SHA = hashlib.sha256(CHUNK).hexdigest()


def raw_response(status: bytes, headers: list[bytes], body: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


VALID = raw_response(b"200 OK", [b"Content-Length: %d" % len(CHUNK)], CHUNK)
SEEDS = [
    VALID,
    raw_response(
        b"200 OK", [b"Transfer-Encoding: chunked"], b"1000\r\n" + CHUNK + b"\r\n0\r\n\r\n"
    ),
    raw_response(b"404 Not Found", [b"Content-Length: 9"], b"not found"),
    raw_response(b"503 Busy", [b"Retry-After: 1", b"Content-Length: 0"], b""),
    raw_response(b"200 OK", [b"Content-Length: 99999999999"], CHUNK * 2),
]


class _FakeSocket:
    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BytesIO:
        return self._file


def parse(data: bytes) -> bytes:
    """What ``HttpFetcher._get`` does with a server's bytes: http.client's parser, then
    ``read_body``, mapping the parser's errors as ``_get`` does."""
    response = http.client.HTTPResponse(_FakeSocket(data))  # type: ignore[arg-type]
    try:
        response.begin()
        return read_body(response, len(CHUNK))
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise FetchProblem(str(e), transient=True) from e


def accepted_only_if_exact(data: bytes) -> None:
    try:
        body = parse(data)
    except FetchProblem:
        return
    assert body == CHUNK or chunk_problem(SHA, len(CHUNK), body, 1 << 30) is not None


def test_the_valid_response_parses() -> None:
    assert parse(VALID) == CHUNK
    assert parse(SEEDS[1]) == CHUNK


@given(
    status=st.integers(min_value=-5, max_value=1200),
    length=st.one_of(
        st.none(),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.text(max_size=30).filter(lambda t: "\r" not in t and "\n" not in t),
    ),
    body=st.one_of(st.just(CHUNK), st.binary(max_size=9000)),
    chunked=st.booleans(),
)
@settings(max_examples=300)
def test_any_status_length_and_body_is_the_chunk_or_a_fetch_problem(
    status: int, length: str | None, body: bytes, chunked: bool
) -> None:
    headers = []
    if length is not None:
        headers.append(b"Content-Length: " + length.encode("utf-8", "replace"))
    if chunked:
        headers.append(b"Transfer-Encoding: chunked")
    accepted_only_if_exact(raw_response(b"%d X" % status, headers, body))


def test_mutated_responses_never_raise_anything_else() -> None:
    for case in mutations(seed=151, seeds=SEEDS, count=3000):
        accepted_only_if_exact(case)


def test_an_endless_body_costs_one_chunk_of_memory() -> None:
    class Endless:
        status = 200

        def getheader(self, name: str) -> str | None:
            return None

        def read1(self, amt: int) -> bytes:
            return b"x" * amt

    tracemalloc.start()
    try:
        with pytest.raises(FetchProblem, match="over the chunk"):
            read_body(Endless(), 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


@contextmanager
def raw_server(replies: list[bytes]) -> Iterator[str]:
    """A loopback server answering each connection's first request with the next reply, then
    closing: what a broken or hostile store can do on the wire."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(replies.pop(0) if replies else b"")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/c/"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_a_trickling_body_gives_up_at_its_deadline() -> None:
    class Trickle:
        status = 200
        now = 0.0

        def getheader(self, name: str) -> str | None:
            return str(len(CHUNK))

        def read1(self, amt: int) -> bytes:
            Trickle.now += 1.0  # one byte a second: never silent, never done
            return b"x"

    with pytest.raises(FetchProblem, match="too slow") as caught:
        read_body(Trickle(), len(CHUNK), deadline=30.0, clock=lambda: Trickle.now)
    assert caught.value.transient and Trickle.now <= 31


def test_raw_bytes_over_a_real_socket_end_in_a_chunk_or_nothing() -> None:
    # ~0.1 s a connection on loopback: the byte-level breadth is in the loop above.
    cases = list(mutations(seed=152, seeds=SEEDS, count=30))
    settings_ = HttpSettings(connections=1, timeout_s=1.0, tries=1, backoff_s=0.0)
    with raw_server(list(cases)) as url:
        for _ in cases:
            fetcher = HttpFetcher(
                [url], settings_, lambda sha, n, data: chunk_problem(sha, n, data, 1 << 30)
            )
            (got,) = fetcher.fetch([(SHA, len(CHUNK))])
            assert got.data is None or got.data == CHUNK


@settings(max_examples=100)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=600),
        lambda children: st.lists(children, max_size=10) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_any_json_as_a_mirror_list_is_a_list_of_urls_or_a_value_error(raw: object) -> None:
    try:
        mirrors = parse_mirrors(raw)
    except ValueError:
        return
    assert len(mirrors) <= MAX_MIRRORS
    assert all(m.startswith(("http://", "https://")) and m.endswith("/") for m in mirrors)


@given(st.text(max_size=200))
def test_any_string_as_a_mirror_url_is_checked(url: str) -> None:
    try:
        checked = check_mirror(url)
    except ValueError:
        return
    assert checked.startswith(("http://", "https://")) and checked.isascii()


def test_mutated_mirror_urls() -> None:
    seeds = [b"https://cdn.example.com/fleet/chunks/", b"http://127.0.0.1:8080/c"]
    for case in mutations(seed=153, seeds=seeds, count=3000):
        with suppress(ValueError):
            check_mirror(case.decode("utf-8", "replace"))
