"""The local inference API's HTTP server: uvicorn with the C parser, on a socket bound here.

:class:`BoundedHttpTools` is uvicorn's httptools protocol with a request head capped as it
arrives, and each response's writes coalesced into one send (:class:`_CoalescingTransport`).
:class:`ApiServer` runs it in a thread of the agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agent.serving.inference_api import MAX_HEADER_BYTES, InferenceApi

log = logging.getLogger("agent.serving.inference_api")


class _CoalescingTransport:
    """A transport whose writes within one step of the event loop go out as one send.

    uvicorn writes a response's head and its body separately: two ``send`` calls, two TCP
    segments for the client to take in, where one does. A write is held until the next write
    (joined and sent at once) or the end of the loop's current step (sent alone), so bytes keep
    their order and nothing waits longer than one step. Everything else is the transport's.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._release)
        else:
            self._held = None
            self._transport.write(held + data)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def close(self) -> None:
        self._release()
        self._transport.close()

    def write_eof(self) -> None:
        self._release()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on a request's head (request line and headers).

    httptools gathers a header's name and value whole before uvicorn sees them, and sets no
    limit of its own: a 64 MiB header would be held whole. Here the head's bytes are counted as
    they arrive and no more than the cap is ever given to the parser: over it, the client gets a
    431 and the connection is closed."""

    max_head_bytes = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a request's head is what comes first on a connection
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # the next request's head, if any

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        if room > 0:
            self._head_bytes += room
            super().data_received(data[:room])  # may end the head: then the rest is body
            if self.transport.is_closing():
                return
        if self._in_head:
            self._refuse_head()
        else:
            self.data_received(data[room:])

    def _refuse_head(self) -> None:
        message = f"request head over this device's {self.max_head_bytes}-byte cap"
        log.warning("inference API: %s refused", message)
        doc = json.dumps({"error": message}).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(doc)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + doc
        )
        self.transport.close()


def remove_stale_socket(path: str) -> None:
    """Remove what a killed agent left at ``path``, if it is that: a socket no one listens on.
    Nothing else is ever removed: a file, a directory or a link there, or a socket that
    answers, is an ``OSError`` that says so."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a symbolic link"
            if stat.S_ISLNK(mode)
            else "a regular file"
            if stat.S_ISREG(mode)
            else "not a socket"
        )
        raise OSError(f"{path} is {kind}, not a socket; the agent never replaces it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # refused: left by an agent that is gone
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use: another process answers on it")


@dataclass
class ApiServer:
    """uvicorn in a thread of the agent, on a socket bound here first (so an address in use is
    our one-line error, not a server thread dying); ``stop`` lets requests in flight finish."""

    app: InferenceApi
    host: str
    port: int
    unix_socket: str = ""
    max_header_bytes: int = MAX_HEADER_BYTES

    def __post_init__(self) -> None:
        protocol = type(
            "BoundedHttpTools", (BoundedHttpTools,), {"max_head_bytes": self.max_header_bytes}
        )
        config = uvicorn.Config(
            self.app,
            http=protocol,
            lifespan="off",
            access_log=False,
            log_config=None,  # uvicorn's records go through the agent's logging, one line each
            log_level="warning",
            timeout_graceful_shutdown=5,
            proxy_headers=False,  # loopback or a Unix socket: no proxy, no per-request rewrite
        )
        self._server = uvicorn.Server(config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> socket.socket:
        if self.unix_socket:
            remove_stale_socket(self.unix_socket)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self.unix_socket)
            os.chmod(self.unix_socket, 0o660)  # the agent's user and group: apps on the device
        else:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            # proto IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that say they
            # are TCP, and with Nagle on, a response's headers and body wait ~40 ms for an ACK.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        sock.listen(1024)
        return sock

    def start(self, timeout: float = 10.0) -> None:
        where = self.unix_socket or f"{self.host}:{self.port}"
        try:
            self._socket = self._bind()
        except OSError as e:
            raise OSError(f"cannot listen on {where}: {e.strerror or e}") from e
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="inference-api",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the inference API did not start on {where}")
            time.sleep(0.01)

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    @property
    def bound_port(self) -> int:
        """The TCP port bound (useful with port 0)."""
        if self._socket is not None and not self.unix_socket:
            return int(self._socket.getsockname()[1])
        return self.port

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
        self.app.close()
