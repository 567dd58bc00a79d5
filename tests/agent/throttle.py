"""A slow link for tests: a TCP proxy between the agent and a real broker that passes at most
``rate`` bytes per second in each direction (token bucket, small slices, so a packet arrives
as a trickle the way it would over a weak radio link), and can cut every connection at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
_SLICE = 1024  # bytes forwarded at a time: small, so the rate is smooth within a packet


class ThrottledProxy:
    def __init__(self, upstream_port: int, rate: int) -> None:
        self.upstream_port = upstream_port
        self.rate = rate  # bytes per second, each direction
        self._server = socket.create_server((HOST, 0))
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.bytes_down = 0  # broker -> client
        self.hold_down = threading.Event()  # set: nothing more reaches the client until cleared
        self._thread = threading.Thread(target=self._accept, name="throttle", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst, down in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        """Forward src -> dst at ``rate`` bytes/s: one slice, then wait its share of a second."""
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                data = src.recv(_SLICE)
                if not data:
                    break
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                while down and self.hold_down.is_set() and not self._stop.is_set():
                    time.sleep(0.01)
                dst.sendall(data)
                if down:
                    self.bytes_down += len(data)
                next_at = max(next_at, time.monotonic() - 0.05) + len(data) / self.rate
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Break every connection through the proxy (the link drops; new ones are accepted)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._server.close()
        self._thread.join(2)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()
