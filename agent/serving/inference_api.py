"""The local inference API: a bare ASGI app served by uvicorn on loopback or a Unix socket.

    GET  /healthz                      liveness: the agent is running
    GET  /readyz                       readiness: every configured model has a version loaded
    GET  /v1/models                    models, their serving versions and tensor specs
    GET  /v1/models/{name}             one model
    POST /v1/models/{name}/predict     JSON ({"inputs": {...}}) or .npz / .npy body
    GET  /metrics                      Prometheus exposition

No web framework: one small routing function keeps a request's overhead to the parsing that
uvicorn's C parser does and the runtime call. Inference runs in a thread pool so the event
loop keeps accepting requests; a request holds the version it started on until it finishes,
so a swap never fails a request in flight.

Hostile input costs bounded memory and never a 5xx: a request's head is capped as it arrives
(:class:`BoundedHttpTools`), its body by ``max_body_bytes`` as it arrives, and what the body
decodes to by :class:`agent.serving.codec.Limits` before it is decoded; a big body is decoded in its
own thread so ``/healthz`` and other clients never wait on it. A 5xx means the runtime failed
on valid input, nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from agent.metrics import CONTENT_TYPE, Metrics
from agent.serving import codec, oip
from agent.serving.http_messages import (
    Receive,
    Scope,
    Send,
    decode_request,
    describe,
    encode_response,
    read_headers,
    reply,
    reply_json,
)
from agent.serving.request_runs import INLINE_RUN_MS, RequestRuns
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion

log = logging.getLogger(__name__)

# Every route this API serves (docs/openapi.json describes each; a test holds them equal).
ROUTES = (
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/models/{model}/predict"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{model}"),
    ("GET", "/v2/models/{model}/ready"),
    ("POST", "/v2/models/{model}/infer"),
    ("GET", "/v2/models/{model}/versions/{version}"),
    ("GET", "/v2/models/{model}/versions/{version}/ready"),
    ("POST", "/v2/models/{model}/versions/{version}/infer"),
)
_PREFIX = "/v1/models"
_V2_MODELS = "/v2/models/"
# Bodies up to this size are decoded on the event loop (microseconds); bigger ones in a thread.
INLINE_DECODE_BYTES = 64 << 10
MAX_HEADER_BYTES = 16 << 10


class _Disconnected(Exception):
    """The client went away before its body was whole: nothing to answer."""


class InferenceApi:
    def __init__(
        self,
        slots: Mapping[str, ServingSlot],
        metrics: Metrics,
        *,
        max_body_bytes: int,
        threads: int,
        batching: Mapping[str, tuple[float, int]] | None = None,
        limits: codec.Limits = codec.DEFAULT_LIMITS,
        inline_run_ms: float = INLINE_RUN_MS,
    ) -> None:
        self._slots = slots
        self._metrics = metrics
        self._max_body = max_body_bytes
        self._limits = limits
        # Where requests run: in batches, on the event loop or in the "inference" threads.
        self._runs = RequestRuns(
            metrics,
            threads=threads,
            thread_name_prefix="inference",
            batching=batching,
            inline_ms=inline_run_ms,
        )
        # One thread: big bodies are decoded one at a time, so decoding holds at most one
        # request's max_decoded_bytes beyond the small ones decoded inline.
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="decode")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        try:
            if path.startswith(_V2_MODELS):
                await self._v2_model(method, path[len(_V2_MODELS) :], scope, receive, send)
            elif method == "POST" and path.startswith(_PREFIX) and path.endswith("/predict"):
                name = path[len(_PREFIX) + 1 : -len("/predict")]
                await self._infer(name, "", False, scope, receive, send)
            elif method != "GET":
                await reply_json(send, 405, {"error": f"{method} is not allowed on {path:.200}"})
            elif path == "/healthz":
                await reply_json(send, 200, {"status": "alive"})
            elif path == "/readyz":
                waiting = self._waiting()
                status = 503 if waiting else 200
                await reply_json(send, status, {"ready": not waiting, "waiting_for": waiting})
            elif path == "/metrics":
                await reply(send, 200, self._metrics.exposition(), CONTENT_TYPE)
            elif path == _PREFIX:
                await reply_json(send, 200, {"models": [describe(s) for s in self._slots.values()]})
            elif path.startswith(_PREFIX + "/") and path[len(_PREFIX) + 1 :] in self._slots:
                await reply_json(send, 200, describe(self._slots[path[len(_PREFIX) + 1 :]]))
            elif path == "/v2":
                await reply_json(send, 200, oip.server_metadata())
            elif path == "/v2/health/live":
                await reply_json(send, 200, {"live": True})
            elif path == "/v2/health/ready":
                # The protocol: 200 is ready, a 4xx is not.
                waiting = self._waiting()
                await reply_json(send, 400 if waiting else 200, {"ready": not waiting})
            else:
                await reply_json(send, 404, {"error": f"no such endpoint: {method} {path:.200}"})
        except codec.RequestError as e:
            await reply_json(send, e.status, {"error": e.message})
        except _Disconnected:
            return
        except Exception as e:  # a bug of ours: one line in the log, not a traceback per request
            log.error("inference API: %s %s failed: %s", method, path[:200], _describe_error(e))
            await reply_json(send, 500, {"error": f"internal error: {type(e).__name__}"})

    def _waiting(self) -> list[str]:
        return [n for n, s in self._slots.items() if s.loaded is None]

    async def _v2_model(
        self, method: str, rest: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """``{name}[/versions/{v}][/ready|/infer]`` under ``/v2/models/``."""
        name, *tail = rest.split("/")
        version = ""
        if tail[:1] == ["versions"] and len(tail) >= 2 and tail[1]:
            version, tail = tail[1], tail[2:]
        if not name or tail not in ([], ["ready"], ["infer"]):
            raise codec.RequestError(404, f"no such endpoint: {method} /v2/models/{rest:.200}")
        action = tail[0] if tail else ""
        wanted = "POST" if action == "infer" else "GET"
        if method != wanted:
            raise codec.RequestError(405, f"{method} is not allowed on /v2/models/{rest:.200}")
        if action == "infer":
            await self._infer(name, version, True, scope, receive, send)
            return
        loaded = self._serving(name, version, ready_probe=action == "ready")
        if action == "ready":
            ready = loaded is not None
            await reply_json(send, 200 if ready else 400, {"name": name, "ready": ready})
        else:
            assert loaded is not None
            await reply_json(send, 200, oip.model_metadata(name, loaded))

    def _serving(
        self, name: str, version: str, *, ready_probe: bool = False
    ) -> LoadedVersion | None:
        """The version of ``name`` that answers (``version`` "" or the one serving): a 404 for
        an unknown model or version, a 503 while none is installed (``None`` for a probe)."""
        slot = self._slots.get(name)
        if slot is None:
            known = ", ".join(sorted(self._slots)) or "none"
            raise codec.RequestError(404, f"no model '{name:.80}' on this device (models: {known})")
        loaded = slot.loaded
        if loaded is None:
            if ready_probe:
                return None
            raise codec.RequestError(503, f"model '{name}' has no version installed yet")
        if not oip.version_matches(loaded, version):
            raise codec.RequestError(
                404,
                f"model '{name}' version '{version:.40}' is not served here; "
                f"serving: {oip.version_label(loaded)}",
            )
        return loaded

    async def _infer(
        self, name: str, version: str, v2: bool, scope: Scope, receive: Receive, send: Send
    ) -> None:
        start = time.perf_counter()
        loaded = self._serving(name, version)
        assert loaded is not None
        slot = self._slots[name]
        series = self._metrics.series(name, oip.version_label(loaded))
        headers = read_headers(scope["headers"])
        try:
            body = await self._body(headers, receive)
            if len(body) <= INLINE_DECODE_BYTES:  # microseconds: here, no hand-off
                request, arrays = decode_request(v2, body, headers, loaded, self._limits)
            else:
                request, arrays = await asyncio.get_running_loop().run_in_executor(
                    self._decoder, decode_request, v2, body, headers, loaded, self._limits
                )
        except codec.RequestError as e:
            series.error("input")
            await reply_json(send, e.status, {"error": e.message})
            series.answered(e.status, time.perf_counter() - start)
            return
        batcher = self._runs.batcher(name, slot, loaded)
        inline = len(body) <= INLINE_DECODE_BYTES
        try:
            answered, outputs = await self._runs.run(
                name, slot, loaded, arrays, series, batcher, inline=inline
            )
        except Exception as e:  # a runtime failure on valid input is the 5xx
            series.error("inference")
            log.warning("inference failed for %s v%s: %s", name, oip.version_label(loaded), e)
            await reply_json(send, 500, {"error": f"inference failed: {type(e).__name__}"})
            series.answered(500, time.perf_counter() - start)
            return
        if sum(a.nbytes for a in outputs.values()) <= INLINE_DECODE_BYTES:
            payload, media, extra = encode_response(
                request, outputs, headers, name, loaded, answered
            )
        else:
            payload, media, extra = await asyncio.get_running_loop().run_in_executor(
                self._decoder, encode_response, request, outputs, headers, name, loaded, answered
            )
        await reply(send, 200, payload, media, extra)
        series.answered(200, time.perf_counter() - start)

    async def _body(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length", "").strip()
        if declared and not (declared.isascii() and declared.isdigit()):
            raise codec.RequestError(400, f"content-length {declared[:40]!r} is not a number")
        if declared and (len(declared) > 18 or int(declared) > self._max_body):
            raise codec.RequestError(
                413,
                f"body of {declared[:40]} bytes is over this device's {self._max_body}-byte cap",
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:  # chunked uploads declare no length: count as it comes
                raise codec.RequestError(
                    413, f"body is over this device's {self._max_body}-byte cap"
                )
            if not message.get("more_body"):
                if not chunks:
                    return bytes(chunk)
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        self._runs.close()
        self._decoder.shutdown(wait=False, cancel_futures=True)


def _describe_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {codec.one_line(e)}"
