"""The inference API's front ends as ``[serving]`` asks for them: HTTP on loopback and/or a Unix
socket, and gRPC where ``grpc_listen`` / ``grpc_unix_socket`` ask for it. They are started
together when the daemon starts and stopped together when it stops; an address that cannot be
bound is the operator's configuration error (one line, exit 2), with nothing left listening.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.config import AgentConfig
from agent.metrics import Metrics
from agent.serving.codec import Limits
from agent.serving.http_server import ApiServer
from agent.serving.inference_api import InferenceApi
from agent.serving.slots import ServingSlot
from edge_sdk.errors import ConfigError

if TYPE_CHECKING:  # grpcio is the grpc extra: imported only when [serving] asks for gRPC
    from agent.serving.grpc_server import GrpcServer

log = logging.getLogger(__name__)


class FrontEnds:
    """The front ends serving ``slots`` (by model name); none until :meth:`start`."""

    def __init__(
        self, config: AgentConfig, slots: Mapping[str, ServingSlot], metrics: Metrics
    ) -> None:
        self._config = config
        self._slots = slots
        self._metrics = metrics
        self.http: list[ApiServer] = []
        self.grpc: list[GrpcServer] = []

    def start(self) -> None:
        serving = self._config.serving
        wants_grpc = bool(serving.grpc_listen) or serving.grpc_unix_socket is not None
        if not serving.listen and serving.unix_socket is None and not wants_grpc:
            return
        batching = {m.name: (m.batch_window_ms, m.max_batch) for m in self._config.models}
        limits = Limits(
            max_samples=serving.max_samples, max_decoded_bytes=serving.max_decoded_bytes
        )

        def app() -> InferenceApi:
            return InferenceApi(
                self._slots,
                self._metrics,
                max_body_bytes=serving.max_body_bytes,
                threads=serving.threads,
                batching=batching,
                limits=limits,
            )

        head = serving.max_header_bytes
        if serving.listen:
            self.http.append(ApiServer(app(), serving.host, serving.port, max_header_bytes=head))
        if serving.unix_socket is not None:
            # A socket a killed agent left there is replaced; nothing else ever is (ApiServer).
            self.http.append(
                ApiServer(app(), "", 0, str(serving.unix_socket), max_header_bytes=head)
            )
        for server in self.http:
            try:
                server.start()
            except OSError as e:
                raise ConfigError(
                    f"{self._config.path}: serving: {e}; choose another address "
                    "(serving.listen, serving.unix_socket) or stop what holds it"
                ) from e
            log.info("serving on %s", _address("http", server.host, server.bound_port, server))
        if wants_grpc:
            self._start_grpc(batching, limits)
            for g in self.grpc:
                log.info("serving gRPC on %s", _address("grpc", g.host, g.bound_port, g))

    def _start_grpc(self, batching: Mapping[str, tuple[float, int]], limits: Limits) -> None:
        serving = self._config.serving
        try:
            from agent.serving.grpc_server import GrpcInference, GrpcServer
        except ImportError as e:
            raise ConfigError(
                f"{self._config.path}: serving.grpc_listen/grpc_unix_socket need grpcio and "
                f"protobuf ({e.name or e}): pip install 'edgesdk-fleet[grpc]', or remove them"
            ) from e

        def server(**where: Any) -> GrpcServer:
            service = GrpcInference(
                self._slots,
                self._metrics,
                threads=serving.threads,
                batching=batching,
                limits=limits,
            )
            return GrpcServer(
                service,
                max_message_bytes=serving.max_body_bytes,
                max_header_bytes=serving.max_header_bytes,
                **where,
            )

        if serving.grpc_listen:
            self.grpc.append(server(host=serving.grpc_host, port=serving.grpc_port))
        if serving.grpc_unix_socket is not None:
            self.grpc.append(server(unix_socket=str(serving.grpc_unix_socket)))
        for grpc_server in self.grpc:
            try:
                grpc_server.start()
            except OSError as e:
                self.stop()  # nothing left listening behind the error
                raise ConfigError(
                    f"{self._config.path}: serving: gRPC: {e}; choose another address "
                    "(serving.grpc_listen, serving.grpc_unix_socket) or stop what holds it"
                ) from e

    def stop(self) -> None:
        for server in self.http:
            server.stop()
        for grpc_server in self.grpc:
            grpc_server.stop()


def _address(scheme: str, host: str, port: int, server: ApiServer | GrpcServer) -> str:
    """Where a front end listens, as a client would name it."""
    if server.unix_socket:
        return f"unix:{os.path.abspath(server.unix_socket)}"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
