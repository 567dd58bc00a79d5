"""The ``inference.GRPCInferenceService`` handlers: ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata and ModelInfer, on the agent's serving slots.

A bad request is the status code its HTTP twin's 4xx maps to (INVALID_ARGUMENT, NOT_FOUND,
RESOURCE_EXHAUSTED, UNAVAILABLE) with one line saying what to fix; INTERNAL means the runtime
failed on valid input, nothing else. A request holds the version it started on, so a swap never
fails a request in flight. The server that runs them is ``agent.serving.grpc_server``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from agent.metrics import Metrics
from agent.protos import grpc_predict_v2_pb2 as pb
from agent.serving import codec, oip
from agent.serving.grpc_messages import decode_infer, encode_infer, model_metadata
from agent.serving.request_runs import RequestRuns
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion

log = logging.getLogger("agent.serving.grpc_server")  # the gRPC API's one log, as before

SERVICE = "inference.GRPCInferenceService"
MAX_DETAILS = 500  # characters of an error's details

# An HTTP status of the shared core (agent.serving.codec, agent.serving.oip) and what a gRPC client
# gets for it.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _parse(message: type[Any], data: bytes) -> Any:
    try:
        return message.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise _Refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request is not a valid {message.__name__}: {codec.one_line(e)}",
        ) from None


class GrpcInference:
    """The service's handlers. Requests arrive as bytes and are parsed here, so a malformed
    message is INVALID_ARGUMENT (grpcio's own deserializer would answer INTERNAL)."""

    def __init__(
        self,
        slots: Mapping[str, ServingSlot],
        metrics: Metrics,
        *,
        threads: int,
        batching: Mapping[str, tuple[float, int]] | None = None,
        limits: codec.Limits = codec.DEFAULT_LIMITS,
    ) -> None:
        self._slots = slots
        self._metrics = metrics
        self._limits = limits
        # Where requests run, judged as over HTTP: in batches, on the event loop or in threads.
        self._runs = RequestRuns(
            metrics, threads=threads, thread_name_prefix="grpc-inference", batching=batching
        )
        meta = oip.server_metadata()
        self._metadata = pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    def handlers(self) -> grpc.GenericRpcHandler:
        methods: dict[str, tuple[Callable[[bytes], Awaitable[Any]], bool]] = {
            "ServerLive": (self._server_live, False),
            "ServerReady": (self._server_ready, False),
            "ModelReady": (self._model_ready, False),
            "ServerMetadata": (self._server_metadata, False),
            "ModelMetadata": (self._model_metadata, False),
            "ModelInfer": (self._model_infer, True),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(self._wrap(name, call))
                for name, (call, _) in methods.items()
            },
        )

    def _wrap(
        self, method: str, call: Callable[[bytes], Awaitable[Any]]
    ) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]:
        async def handle(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                response = await call(data)
            except _Refused as e:
                await context.abort(e.code, codec.one_line(e.message, MAX_DETAILS))
            except codec.RequestError as e:
                code = STATUS_CODES.get(e.status, grpc.StatusCode.INVALID_ARGUMENT)
                # A name the client sent may hold a newline: details are one line, always.
                await context.abort(code, codec.one_line(e.message, MAX_DETAILS))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug of ours: one line in the log, not a traceback
                log.error("gRPC %s failed: %s: %s", method, type(e).__name__, codec.one_line(e))
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}")
            return bytes(response.SerializeToString())

        return handle

    async def _server_live(self, data: bytes) -> pb.ServerLiveResponse:
        _parse(pb.ServerLiveRequest, data)
        return pb.ServerLiveResponse(live=True)

    async def _server_ready(self, data: bytes) -> pb.ServerReadyResponse:
        _parse(pb.ServerReadyRequest, data)
        return pb.ServerReadyResponse(ready=all(s.loaded is not None for s in self._slots.values()))

    async def _model_ready(self, data: bytes) -> pb.ModelReadyResponse:
        request = _parse(pb.ModelReadyRequest, data)
        slot = self._slot(request.name)
        loaded = slot.loaded
        ready = loaded is not None and oip.version_matches(loaded, request.version)
        return pb.ModelReadyResponse(ready=ready)

    async def _server_metadata(self, data: bytes) -> pb.ServerMetadataResponse:
        _parse(pb.ServerMetadataRequest, data)
        return self._metadata

    async def _model_metadata(self, data: bytes) -> pb.ModelMetadataResponse:
        request = _parse(pb.ModelMetadataRequest, data)
        loaded = self._serving(request.name, request.version)
        return model_metadata(request.name, loaded)

    async def _model_infer(self, data: bytes) -> pb.ModelInferResponse:
        start = time.perf_counter()
        request = _parse(pb.ModelInferRequest, data)
        name = request.model_name
        loaded = self._serving(name, request.model_version)
        slot = self._slots[name]
        manifest = loaded.bundle.manifest
        version = oip.version_label(loaded)
        series = self._metrics.series(name, version)
        names = [o.name for o in request.outputs]
        try:
            arrays = decode_infer(request, manifest.inputs, self._limits)
            if names:
                if len(set(names)) != len(names):
                    raise codec.RequestError(400, "an output is requested twice")
                oip.check_output_names(names, manifest.outputs)
        except codec.RequestError as e:  # counted under the HTTP status its code stands for
            series.error("input")
            series.answered(e.status, time.perf_counter() - start)
            raise
        batcher = self._runs.batcher(name, slot, loaded)
        try:
            _, outputs = await self._runs.run(name, slot, loaded, arrays, series, batcher)
        except Exception as e:  # a runtime failure on valid input is the INTERNAL
            series.error("inference")
            series.answered(500, time.perf_counter() - start)
            log.warning("inference failed for %s %s: %s", name, version, codec.one_line(e))
            raise _Refused(
                grpc.StatusCode.INTERNAL, f"inference failed: {type(e).__name__}"
            ) from None
        response = encode_infer(request, version, oip.select_outputs(outputs, names))
        series.answered(200, time.perf_counter() - start)
        return response

    def _slot(self, name: str) -> ServingSlot:
        slot = self._slots.get(name)
        if slot is None:
            known = ", ".join(sorted(self._slots)) or "none"
            raise _Refused(
                grpc.StatusCode.NOT_FOUND,
                f"no model '{name:.80}' on this device (models: {known})",
            )
        return slot

    def _serving(self, name: str, version: str) -> LoadedVersion:
        """The version serving ``name``, if ``version`` is empty or names it."""
        loaded = self._slot(name).loaded
        if loaded is None:
            raise _Refused(
                grpc.StatusCode.UNAVAILABLE, f"model '{name}' has no version installed yet"
            )
        if not oip.version_matches(loaded, version):
            raise _Refused(
                grpc.StatusCode.NOT_FOUND,
                f"model '{name}' version {version[:40]!r} is not served on this device "
                f"(serving: {oip.version_label(loaded)}); leave the version empty for it",
            )
        return loaded

    def close(self) -> None:
        self._runs.close()
