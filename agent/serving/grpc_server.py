"""The Open Inference Protocol (KServe v2) over gRPC: ``inference.GRPCInferenceService``.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, served by
grpcio's asyncio server in a thread of the agent, on loopback TCP and/or a Unix socket
(``[serving] grpc_listen`` / ``grpc_unix_socket``). grpcio is the ``grpc`` extra: a device that
does not serve gRPC does not install it, and nothing imports this module unless it is asked to.

The same promises as the HTTP API (agent/serving/inference_api.py): a message is capped as it
arrives
(``max_body_bytes``: RESOURCE_EXHAUSTED), metadata by ``max_header_bytes``, and what the
tensors decode to is judged from their declared shapes against :class:`agent.serving.codec.Limits`
before any array is made. A bad request is the status code its HTTP twin's 4xx maps to
(INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE) with one line saying what to fix;
INTERNAL means the runtime failed on valid input, nothing else. A request holds the version it
started on, so a swap never fails a request in flight.

Inputs come as ``raw_input_contents`` (little-endian bytes, one entry per input) or in the
typed ``contents`` field of their datatype; outputs are always ``raw_output_contents``, as
Triton answers (tritonclient reads both).

This module runs the server; the handlers are ``agent.serving.grpc_service`` and the messages
``agent.serving.grpc_messages``, both imported only from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading

import grpc

from agent.serving import codec
from agent.serving.grpc_service import GrpcInference
from agent.serving.http_server import remove_stale_socket

__all__ = ["GrpcInference", "GrpcServer"]  # the service is made where it is served

log = logging.getLogger(__name__)


class GrpcServer:
    """grpcio's asyncio server in a thread of the agent, on ``host:port`` (loopback) or a Unix
    socket; ``start`` raises ``OSError`` with one line if it cannot listen, ``stop`` lets
    requests in flight finish."""

    def __init__(
        self,
        service: GrpcInference,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_socket: str = "",
        max_message_bytes: int = 16 << 20,
        max_header_bytes: int = 16 << 10,
        max_concurrent_streams: int = 128,
    ) -> None:
        self.service = service
        self.host, self.port, self.unix_socket = host, port, unix_socket
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_metadata_size", max_header_bytes),
            ("grpc.max_concurrent_streams", max_concurrent_streams),
            # grpcio sets SO_REUSEPORT by default: a second agent would bind the same port and
            # share its traffic silently. Off: an address in use is an error.
            ("grpc.so_reuseport", 0),
        ]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None
        self.bound_port = port

    @property
    def where(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if self.unix_socket:
            remove_stale_socket(self.unix_socket)  # never replaces anything but a dead socket
        self._thread = threading.Thread(target=self._run, name="grpc-api", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise OSError(f"the gRPC API did not start on {self.where}")
        if self._error is not None:
            raise OSError(f"cannot listen on {self.where}: {self._error}") from self._error
        if self.unix_socket:
            os.chmod(self.unix_socket, 0o660)  # the agent's user and group: apps on the device

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # reported by start(); the thread ends quietly
            if not self._started.is_set():
                self._error = e
                self._started.set()
            else:
                log.error("gRPC API stopped: %s: %s", type(e).__name__, codec.one_line(e))
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        server = grpc.aio.server(options=self._options)
        server.add_generic_rpc_handlers((self.service.handlers(),))
        if self.unix_socket:
            address = f"unix:{os.path.abspath(self.unix_socket)}"
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            address = f"{host}:{self.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(_bind_error(e)) from None
        if not self.unix_socket:
            if port == 0:
                raise OSError("address in use or not available")
            self.bound_port = port
        await server.start()
        self._server = server
        self._started.set()
        await self._stopped.wait()
        await server.stop(grace=5)

    @property
    def started(self) -> bool:
        return self._started.is_set() and self._error is None

    def stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(10)
        self.service.close()


def _bind_error(e: BaseException) -> str:
    text = codec.one_line(e)
    return "address in use or not available" if "bind" in text.lower() else text
