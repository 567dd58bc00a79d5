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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from agent.metrics import Metrics
from agent.protos import grpc_predict_v2_pb2 as pb
from agent.serving import codec, oip
from agent.serving.batching import Batchers
from agent.serving.http_server import remove_stale_socket
from agent.serving.inference_api import COST_WINDOW, INLINE_RUN_MS
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion
from edge_sdk.core.tensors import TensorSpec

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
MAX_DETAILS = 500  # characters of an error's details
_LITTLE = sys.byteorder == "little"

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
# The typed field of InferTensorContents each datatype's values travel in (FP16 has none).
CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def decode_infer(
    request: pb.ModelInferRequest,
    specs: Sequence[TensorSpec],
    limits: codec.Limits = codec.DEFAULT_LIMITS,
) -> dict[str, np.ndarray]:
    """A ModelInferRequest's inputs as arrays, checked like every other request (the shared
    :mod:`agent.serving.oip` core, then :func:`agent.serving.codec.check`); each tensor judged from
    its
    declared datatype and shape before its data is touched. Pure: a
    :class:`codec.RequestError` for anything malformed."""
    wanted = {s.name: s for s in specs}
    inputs = request.inputs
    if len(inputs) > len(wanted):
        raise codec.RequestError(
            422, f"request has {len(inputs)} inputs; this model takes {len(wanted)}"
        )
    raw = request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise codec.RequestError(
            400,
            f"raw_input_contents holds {len(raw)} entries for {len(inputs)} inputs: "
            "send one per input, in order",
        )
    arrays: dict[str, np.ndarray] = {}
    used = 0
    for i, tensor in enumerate(inputs):
        name, shape = tensor.name, list(tensor.shape)
        if name in arrays:
            raise codec.RequestError(400, f"input '{name:.80}' is in the request twice")
        if raw:
            if tensor.HasField("contents"):
                raise codec.RequestError(
                    400, f"input '{name:.80}' has contents and raw_input_contents: send one"
                )
            data: bytes | memoryview = raw[i]
        else:
            data = _typed(name, tensor, shape, limits, used)
        arrays[name] = oip.input_from_raw(name, tensor.datatype, shape, data, wanted, limits, used)
        used += arrays[name].nbytes
    if len(arrays) != len(specs) or len(arrays) > 1:  # one input was judged whole above
        arrays = codec.check(arrays, specs, limits)  # missing inputs, batch sizes that disagree
    return arrays


def _typed(
    name: str,
    tensor: pb.ModelInferRequest.InferInputTensor,
    shape: list[int],
    limits: codec.Limits,
    used: int,
) -> memoryview:
    """A tensor's typed ``contents`` as little-endian bytes for :func:`oip.input_from_raw`
    (which judges the declaration); its count and size checked before any array is made."""
    dtype = oip.numpy_dtype(tensor.datatype)
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise codec.RequestError(
            400,
            f"input '{name:.80}': {tensor.datatype} has no typed contents: send raw_input_contents",
        )
    if len(shape) > oip.MAX_DIMS or any(d < 0 for d in shape):
        raise codec.RequestError(
            400, f"input '{name:.80}': shape must be at most {oip.MAX_DIMS} integers >= 0"
        )
    count = math.prod(shape)
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise codec.RequestError(
            400,
            f"input '{name:.80}': contents.{field} holds {len(values)} values, "
            f"shape {shape[:40]} needs {count}",
        )
    if used + count * dtype.itemsize > limits.max_decoded_bytes:
        raise codec.RequestError(
            413,
            f"input '{name:.80}' needs {count * dtype.itemsize} bytes decoded; this device "
            f"takes at most {limits.max_decoded_bytes} per request (serving.max_decoded_bytes)",
        )
    try:
        with np.errstate(over="raise", invalid="raise"):
            array = np.asarray(values, dtype=dtype.newbyteorder("<"))
    except (OverflowError, ValueError, TypeError, ArithmeticError) as e:
        raise codec.RequestError(
            422,
            f"input '{name:.80}': a value does not fit {tensor.datatype}: {codec.one_line(e)}",
        ) from None
    return np.ascontiguousarray(array).data.cast("B")


def encode_infer(
    request: pb.ModelInferRequest, version: str, outputs: Mapping[str, np.ndarray]
) -> pb.ModelInferResponse:
    """The response: every output as ``raw_output_contents`` (little-endian), as Triton does."""
    response = pb.ModelInferResponse(
        model_name=request.model_name, model_version=version, id=request.id
    )
    for name, array in outputs.items():
        data = array if _LITTLE else array.astype(array.dtype.newbyteorder("<"))
        response.outputs.add(name=name, datatype=oip.datatype(array.dtype), shape=array.shape)
        response.raw_output_contents.append(data.tobytes())  # C order, whatever the strides
    return response


def model_metadata(name: str, loaded: LoadedVersion) -> pb.ModelMetadataResponse:
    doc = oip.model_metadata(name, loaded)
    response = pb.ModelMetadataResponse(
        name=doc["name"], versions=doc["versions"], platform=doc["platform"]
    )
    for key in ("inputs", "outputs"):
        for t in doc[key]:
            getattr(response, key).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
    return response


def _timed_run(
    slot: ServingSlot, loaded: LoadedVersion, arrays: Mapping[str, np.ndarray]
) -> tuple[int, dict[str, np.ndarray], float]:
    start = time.perf_counter()
    answered, outputs = slot.predict_on(loaded, arrays)
    return answered, outputs, time.perf_counter() - start


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


Handler = Callable[[bytes], Awaitable[bytes]]


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
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="grpc-inference")
        self._batchers = Batchers(
            {k: v for k, v in (batching or {}).items() if v[0] > 0},
            self._executor,
            lambda name, v, n: self._metrics.series(name, oip.version_label(v)).batch.observe(n),
        )
        # Per model: [id of the version, fastest ms per sample in this window, runs in this
        # window, fastest in the last one] (as agent.serving.inference_api keeps them).
        self._costs: dict[str, list[float]] = {}
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
        batcher = self._batchers.get(name, slot, loaded)
        try:
            if batcher is not None:
                run_start = time.perf_counter()
                _, outputs = await batcher.predict(loaded, arrays)
                ran = time.perf_counter() - run_start
            elif self._cheap(name, loaded, arrays):
                # As over HTTP: a model that answers in well under a millisecond runs here,
                # where handing it to a thread and back would cost more than the run.
                _, outputs, ran = _timed_run(slot, loaded, arrays)
            else:
                _, outputs, ran = await asyncio.get_running_loop().run_in_executor(
                    self._executor, _timed_run, slot, loaded, arrays
                )
        except Exception as e:  # a runtime failure on valid input is the INTERNAL
            series.error("inference")
            series.answered(500, time.perf_counter() - start)
            log.warning("inference failed for %s %s: %s", name, version, codec.one_line(e))
            raise _Refused(
                grpc.StatusCode.INTERNAL, f"inference failed: {type(e).__name__}"
            ) from None
        series.latency.observe(ran)
        if batcher is None:
            samples = codec.samples(arrays)
            series.batch.observe(samples)
            self._learn(name, loaded, ran * 1e3 / samples)
        response = encode_infer(request, version, oip.select_outputs(outputs, names))
        series.answered(200, time.perf_counter() - start)
        return response

    def _cheap(self, name: str, loaded: LoadedVersion, arrays: Mapping[str, Any]) -> bool:
        """Whether this request's run should take under ``INLINE_RUN_MS``, judged as the HTTP
        API judges it: by the serving version's fastest recent run per sample (a busy machine
        only ever adds to a run's time), its gate's p95 before it has run here."""
        known = self._costs.get(name)
        cost = min(known[1], known[3]) if known and known[0] == id(loaded) else None
        if cost is None:
            cost = loaded.gate.latency_p95_ms
        return cost * codec.samples(arrays) <= INLINE_RUN_MS

    def _learn(self, name: str, loaded: LoadedVersion, ms_per_sample: float) -> None:
        known = self._costs.get(name)
        if not known or known[0] != id(loaded):
            self._costs[name] = [id(loaded), ms_per_sample, 1, ms_per_sample]
        elif known[2] >= COST_WINDOW:  # a new window: a model that got slower is seen so
            self._costs[name] = [id(loaded), ms_per_sample, 1, known[1]]
        else:
            known[1] = min(known[1], ms_per_sample)
            known[2] += 1

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
        self._executor.shutdown(wait=False, cancel_futures=True)


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
