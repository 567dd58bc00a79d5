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
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.metrics import CONTENT_TYPE, Metrics
from agent.serving import codec, oip
from agent.serving.batching import Batchers
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
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
# A model whose gate measured a p95 under this (per sample) runs small requests on the event
# loop: a thread-pool hand-off costs ~50-100 us, more than such a model's run.
INLINE_RUN_MS = 0.25
COST_WINDOW = 256  # runs per window of the fastest-run estimate
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
        self._inline_ms = inline_run_ms
        # Per model: [id of the serving version, its fastest run per sample (ms) in this
        # window of runs, runs in the window, the fastest in the window before], which decides
        # whether a request runs on the event loop. Only the id: an old version is never kept
        # alive here.
        self._costs: dict[str, list[Any]] = {}
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="inference")
        # One thread: big bodies are decoded one at a time, so decoding holds at most one
        # request's max_decoded_bytes beyond the small ones decoded inline.
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="decode")
        # Per model (window_ms, max_batch); the Batcher itself is made on the event loop.
        self._batchers = Batchers(
            {k: v for k, v in (batching or {}).items() if v[0] > 0},
            self._executor,
            lambda name, v, n: self._metrics.series(name, oip.version_label(v)).batch.observe(n),
        )

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
                await _json(send, 405, {"error": f"{method} is not allowed on {path:.200}"})
            elif path == "/healthz":
                await _json(send, 200, {"status": "alive"})
            elif path == "/readyz":
                waiting = self._waiting()
                status = 503 if waiting else 200
                await _json(send, status, {"ready": not waiting, "waiting_for": waiting})
            elif path == "/metrics":
                await _reply(send, 200, self._metrics.exposition(), CONTENT_TYPE)
            elif path == _PREFIX:
                await _json(send, 200, {"models": [describe(s) for s in self._slots.values()]})
            elif path.startswith(_PREFIX + "/") and path[len(_PREFIX) + 1 :] in self._slots:
                await _json(send, 200, describe(self._slots[path[len(_PREFIX) + 1 :]]))
            elif path == "/v2":
                await _json(send, 200, oip.server_metadata())
            elif path == "/v2/health/live":
                await _json(send, 200, {"live": True})
            elif path == "/v2/health/ready":
                # The protocol: 200 is ready, a 4xx is not.
                waiting = self._waiting()
                await _json(send, 400 if waiting else 200, {"ready": not waiting})
            else:
                await _json(send, 404, {"error": f"no such endpoint: {method} {path:.200}"})
        except codec.RequestError as e:
            await _json(send, e.status, {"error": e.message})
        except _Disconnected:
            return
        except Exception as e:  # a bug of ours: one line in the log, not a traceback per request
            log.error("inference API: %s %s failed: %s", method, path[:200], _describe_error(e))
            await _json(send, 500, {"error": f"internal error: {type(e).__name__}"})

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
            await _json(send, 200 if ready else 400, {"name": name, "ready": ready})
        else:
            assert loaded is not None
            await _json(send, 200, oip.model_metadata(name, loaded))

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
        headers = _headers(scope["headers"])
        try:
            body = await self._body(headers, receive)
            if len(body) <= INLINE_DECODE_BYTES:  # microseconds: here, no hand-off
                request, arrays = _decode(v2, body, headers, loaded, self._limits)
            else:
                request, arrays = await asyncio.get_running_loop().run_in_executor(
                    self._decoder, _decode, v2, body, headers, loaded, self._limits
                )
        except codec.RequestError as e:
            series.error("input")
            await _json(send, e.status, {"error": e.message})
            series.answered(e.status, time.perf_counter() - start)
            return
        batcher = self._batchers.get(name, slot, loaded)
        try:
            if batcher is not None:
                run_start = time.perf_counter()
                answered, outputs = await batcher.predict(loaded, arrays)
                ran = time.perf_counter() - run_start
            elif len(body) <= INLINE_DECODE_BYTES and self._cheap(name, loaded, arrays):
                # A model that answers in well under a millisecond runs here: handing it to a
                # thread and back costs more than the run.
                answered, outputs, ran = _timed_run(slot, loaded, arrays)
            else:
                loop = asyncio.get_running_loop()
                answered, outputs, ran = await loop.run_in_executor(
                    self._executor, _timed_run, slot, loaded, arrays
                )
        except Exception as e:  # a runtime failure on valid input is the 5xx
            series.error("inference")
            log.warning("inference failed for %s v%s: %s", name, oip.version_label(loaded), e)
            await _json(send, 500, {"error": f"inference failed: {type(e).__name__}"})
            series.answered(500, time.perf_counter() - start)
            return
        series.latency.observe(ran)
        if batcher is None:
            samples = codec.samples(arrays)
            series.batch.observe(samples)
            self._learn(name, loaded, ran * 1e3 / samples)
        if sum(a.nbytes for a in outputs.values()) <= INLINE_DECODE_BYTES:
            payload, media, extra = _encode(request, outputs, headers, name, loaded, answered)
        else:
            payload, media, extra = await asyncio.get_running_loop().run_in_executor(
                self._decoder, _encode, request, outputs, headers, name, loaded, answered
            )
        await _reply(send, 200, payload, media, extra)
        series.answered(200, time.perf_counter() - start)

    def _cheap(self, name: str, loaded: LoadedVersion, arrays: Mapping[str, Any]) -> bool:
        """Whether this request's run should take under ``inline_run_ms``: by the serving
        version's fastest recent run per sample (a busy machine only ever adds to a run's
        time, so the fastest is what the model costs), its gate's p95 before it has run."""
        known = self._costs.get(name)
        cost = min(known[1], known[3]) if known and known[0] == id(loaded) else None
        if cost is None:
            cost = loaded.gate.latency_p95_ms
        return cost * codec.samples(arrays) <= self._inline_ms

    def _learn(self, name: str, loaded: LoadedVersion, ms_per_sample: float) -> None:
        known = self._costs.get(name)
        if not known or known[0] != id(loaded):
            self._costs[name] = [id(loaded), ms_per_sample, 1, ms_per_sample]
        elif known[2] >= COST_WINDOW:  # a new window: a model that got slower is seen so
            self._costs[name] = [id(loaded), ms_per_sample, 1, known[1]]
        else:
            known[1] = min(known[1], ms_per_sample)
            known[2] += 1

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
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._decoder.shutdown(wait=False, cancel_futures=True)


_HEADERS = {
    b"content-type": "content-type",
    b"content-length": "content-length",
    b"accept": "accept",
    b"inference-header-content-length": "inference-header-content-length",
}


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request headers this API reads (uvicorn gives names in lower case)."""
    found = {}
    for key, value in raw:
        name = _HEADERS.get(key) or _HEADERS.get(key.lower())
        if name is not None:
            found[name] = value.decode("latin-1")
    return found


def _timed_run(
    slot: ServingSlot, loaded: LoadedVersion, arrays: Mapping[str, Any]
) -> tuple[int, dict[str, Any], float]:
    """The run and its own time, measured where it runs (a hand-off's wait is not the
    model's cost)."""
    start = time.perf_counter()
    answered, outputs = slot.predict_on(loaded, arrays)
    return answered, outputs, time.perf_counter() - start


def _decode(
    v2: bool, body: bytes, headers: Mapping[str, str], loaded: LoadedVersion, limits: codec.Limits
) -> tuple[oip.InferRequest | None, dict[str, Any]]:
    if v2:
        request = _decode_v2(body, headers, loaded, limits)
        return request, request.inputs
    inputs = loaded.bundle.manifest.inputs
    return None, codec.decode(body, headers.get("content-type", ""), inputs, limits)


def _encode(
    request: oip.InferRequest | None,
    outputs: Mapping[str, Any],
    headers: Mapping[str, str],
    name: str,
    loaded: LoadedVersion,
    answered: int,
) -> tuple[bytes, str, dict[str, str]]:
    if request is not None:
        return _encode_v2(name, loaded, request, outputs)
    payload, media = codec.encode(outputs, headers.get("accept", ""))
    extra = {"x-model-version": str(answered)}
    if media == codec.NPY:  # a bare array carries no name: say which output it is
        extra["x-output-name"] = next(iter(outputs))
    return payload, media, extra


def _decode_v2(
    body: bytes, headers: Mapping[str, str], loaded: LoadedVersion, limits: codec.Limits
) -> oip.InferRequest:
    length = headers.get("inference-header-content-length")
    if length is None:
        kind = codec.media_type(headers.get("content-type", ""))
        if kind not in ("", codec.JSON, codec.OCTET):
            raise codec.RequestError(
                415,
                f"content type {kind[:80]!r} is not supported on /v2; send {codec.JSON}, or "
                "binary tensors with Inference-Header-Content-Length",
            )
        header, binary = body, None
    else:
        header, binary = oip.split_binary(body, length)
    m = loaded.bundle.manifest
    request = oip.parse_infer(header, binary, m.inputs, limits)
    oip.check_output_names(request.outputs, m.outputs)
    return request


def _encode_v2(
    name: str, loaded: LoadedVersion, request: oip.InferRequest, outputs: Mapping[str, Any]
) -> tuple[bytes, str, dict[str, str]]:
    chosen = oip.select_outputs(outputs, request.outputs)
    body, head = oip.infer_response(
        name, oip.version_label(loaded), request.id, chosen, request.binary_outputs(list(chosen))
    )
    # x-model-version: the integer too, for clients that compare versions (not the protocol's).
    extra = {"x-model-version": str(loaded.version)}
    if head is None:
        return body, codec.JSON, extra
    extra["inference-header-content-length"] = str(head)
    return body, codec.OCTET, extra


def _describe_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {codec.one_line(e)}"


def describe(slot: ServingSlot) -> dict[str, Any]:
    loaded = slot.loaded
    if loaded is None:
        return {"name": slot.name, "version": None, "ready": False}
    m = loaded.bundle.manifest
    return {
        "name": slot.name,
        "version": m.version,
        "label": m.label,
        "ready": True,
        "profile": m.profile,
        "runtime": m.runtime,
        "precision": m.precision,
        "inputs": [t.to_json() for t in m.inputs],
        "outputs": [t.to_json() for t in m.outputs],
    }


async def _reply(
    send: Send, status: int, body: bytes, media: str, extra: Mapping[str, str] | None = None
) -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, doc: Any) -> None:
    await _reply(send, status, json.dumps(doc).encode(), codec.JSON)
