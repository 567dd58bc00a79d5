"""The local inference API's HTTP messages: the request headers it reads, request bodies
decoded to tensors (``/v1`` predict and the Open Inference Protocol's ``/v2`` infer), and
responses encoded and sent over ASGI.

Decoding is bounded by :class:`agent.serving.codec.Limits` before any array is made; a bad body
is a :class:`agent.serving.codec.RequestError` (a 4xx with a message that says what to fix).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent.serving import codec, oip
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


_HEADERS = {
    b"content-type": "content-type",
    b"content-length": "content-length",
    b"accept": "accept",
    b"inference-header-content-length": "inference-header-content-length",
}


def read_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request headers this API reads (uvicorn gives names in lower case)."""
    found = {}
    for key, value in raw:
        name = _HEADERS.get(key) or _HEADERS.get(key.lower())
        if name is not None:
            found[name] = value.decode("latin-1")
    return found


def decode_request(
    v2: bool, body: bytes, headers: Mapping[str, str], loaded: LoadedVersion, limits: codec.Limits
) -> tuple[oip.InferRequest | None, dict[str, Any]]:
    """A request body as its model's input arrays, checked against ``limits`` (on ``/v2``
    with the parsed infer request, which says what to answer)."""
    if v2:
        request = _decode_v2(body, headers, loaded, limits)
        return request, request.inputs
    inputs = loaded.bundle.manifest.inputs
    return None, codec.decode(body, headers.get("content-type", ""), inputs, limits)


def encode_response(
    request: oip.InferRequest | None,
    outputs: Mapping[str, Any],
    headers: Mapping[str, str],
    name: str,
    loaded: LoadedVersion,
    answered: int,
) -> tuple[bytes, str, dict[str, str]]:
    """The response body, its media type and extra headers: the ``/v2`` document, or on
    ``/v1`` what ``accept`` asks for."""
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


async def reply(
    send: Send, status: int, body: bytes, media: str, extra: Mapping[str, str] | None = None
) -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def reply_json(send: Send, status: int, doc: Any) -> None:
    await reply(send, status, json.dumps(doc).encode(), codec.JSON)
