"""The HTTP(S) chunk fetcher against real servers: keep-alive connections, requests in
parallel, retries with backoff on transient answers, a dead mirror skipped after a few
failures rather than per chunk, and the next mirror when one serves the wrong bytes."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from agent.update.http_fetch import HttpFetcher, HttpSettings
from agent.update.transfer import chunk_problem
from testing.mosquitto import HOST, free_port
from testing.nginx import Nginx


def chunks(count: int, size: int = 3000) -> dict[str, bytes]:
    out = {}
    for i in range(count):
        data = bytes([i % 251]) * size + i.to_bytes(4, "big")
        out[hashlib.sha256(data).hexdigest()] = data
    return out


def check(sha: str, length: int, data: bytes) -> str | None:
    return chunk_problem(sha, length, data, 1 << 30)


def fetch_all(
    fetcher: HttpFetcher, wanted: dict[str, bytes]
) -> dict[str, tuple[bytes | None, str]]:
    return {
        got.sha: (got.data, got.source)
        for got in fetcher.fetch((sha, len(data)) for sha, data in wanted.items())
    }


def test_keep_alive_and_parallel_requests_on_nginx(tmp_path: Path) -> None:
    wanted = chunks(40)
    root = tmp_path / "www"
    root.mkdir()
    for sha, data in wanted.items():
        (root / sha).write_bytes(data)
    with Nginx(root, tmp_path / "nginx") as origin:
        settings = HttpSettings(connections=3)
        got = fetch_all(HttpFetcher([origin.url], settings, check), wanted)
        served = origin.requests()
    assert {sha: data for sha, (data, _) in got.items()} == wanted
    assert len(served) == 40 and all(status == 200 for _, _, status in served)
    # One keep-alive connection per worker, not one per chunk.
    assert len({conn for conn, _, _ in served}) <= 3


class _Flaky(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answers: ClassVar[list[int]] = []
    body = b""

    def do_GET(self) -> None:
        status = type(self).answers.pop(0) if type(self).answers else 200
        payload = type(self).body if status == 200 else b"busy"
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def flaky_server(answers: list[int], body: bytes) -> Iterator[str]:
    handler = type("Handler", (_Flaky,), {"answers": list(answers), "body": body})
    server = http.server.ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_transient_answers_are_retried_with_backoff() -> None:
    ((sha, data),) = chunks(1).items()
    pauses: list[float] = []
    settings = HttpSettings(connections=1, tries=3, backoff_s=0.25)
    with flaky_server([503, 429], data) as url:
        fetcher = HttpFetcher([url], settings, check, sleep=pauses.append)
        (got,) = fetcher.fetch([(sha, len(data))])
    assert got.data == data and got.source == url
    assert pauses == [0.25, 0.5]
    assert [p.split(": ", 1)[1] for p in got.problems] == ["HTTP 503", "HTTP 429"]


def test_a_404_moves_to_the_next_mirror_at_once() -> None:
    ((sha, data),) = chunks(1).items()
    pauses: list[float] = []
    with flaky_server([404], data) as first, flaky_server([], data) as second:
        fetcher = HttpFetcher([first, second], HttpSettings(), check, sleep=pauses.append)
        (got,) = fetcher.fetch([(sha, len(data))])
    assert got.data == data and got.source == second and pauses == []


def test_a_dead_mirror_is_skipped_after_a_few_failures_not_tried_per_chunk() -> None:
    wanted = chunks(30)
    dead = f"http://{HOST}:{free_port()}/"
    pauses: list[float] = []
    root_body = dict(wanted)

    class Serve(_Flaky):
        def do_GET(self) -> None:
            data = root_body.get(self.path.rsplit("/", 1)[-1], b"")
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer((HOST, 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        good = f"http://{HOST}:{server.server_address[1]}/"
        settings = HttpSettings(connections=2, tries=2, backoff_s=0.01)
        fetcher = HttpFetcher([dead, good], settings, check, sleep=pauses.append)
        got = fetch_all(fetcher, wanted)
    finally:
        server.shutdown()
        server.server_close()
    assert all(data == wanted[sha] and src == good for sha, (data, src) in got.items())
    # Each worker may hit the dead mirror a few times before it counts as down; never 30 x 2.
    assert len(pauses) <= 2 * 2


def test_a_caller_that_stops_reading_holds_only_a_window_of_chunks() -> None:
    """Chunks are asked for at most ``2 * connections`` ahead of what the caller took: a slow
    disk or a slow check never makes a whole release pile up in memory."""
    wanted = chunks(40)
    served: list[str] = []

    class Serve(_Flaky):
        def do_GET(self) -> None:
            sha = self.path.rsplit("/", 1)[-1]
            served.append(sha)
            data = wanted[sha]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer((HOST, 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://{HOST}:{server.server_address[1]}/"
        fetcher = HttpFetcher([url], HttpSettings(connections=2), check)
        results = fetcher.fetch((sha, len(data)) for sha, data in wanted.items())
        first = next(results)
        time.sleep(0.5)  # the caller is busy: nothing more may be fetched than the window
        assert first.data is not None and len(served) <= 1 + 2 * 2
        rest = list(results)
    finally:
        server.shutdown()
        server.server_close()
    assert len(rest) == 39 and all(got.data == wanted[got.sha] for got in rest)
