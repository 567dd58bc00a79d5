"""A small Python client for the agent's local inference API (standard library only).

    from edge_sdk.client import InferenceClient
    with InferenceClient("http://127.0.0.1:8470") as client:        # or unix_socket="/run/..."
        answer = client.predict("digits", {"input": batch})
        answer.version, answer.outputs["logits"]

Tensors travel as ``.npz`` both ways (no JSON parsing on either side). One client keeps one
keep-alive connection: use one per thread.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from edge_sdk import npy
from edge_sdk.errors import InputError, PredictError

NPZ = "application/x-npz"
NPY = "application/x-npy"


@dataclass(frozen=True)
class Prediction:
    version: int
    outputs: dict[str, np.ndarray]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class InferenceClient:
    def __init__(
        self,
        url: str = "http://127.0.0.1:8470",
        *,
        unix_socket: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if unix_socket is not None:
            self._connection: http.client.HTTPConnection = _UnixConnection(unix_socket, timeout)
        else:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise InputError(
                    f"{url!r} is not http://HOST:PORT; the API is plain HTTP on loopback"
                )
            self._connection = http.client.HTTPConnection(
                parts.hostname, parts.port or 80, timeout=timeout
            )

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            try:
                self._connection.request(method, path, body=body, headers=dict(headers or {}))
                response = self._connection.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: reconnect once.
                self._connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _json(self, path: str) -> Any:
        status, _, body = self._request("GET", path)
        doc = json.loads(body)
        if status >= 400:
            raise PredictError(status, doc.get("error", body.decode(errors="replace")))
        return doc

    def models(self) -> list[dict[str, Any]]:
        return list(self._json("/v1/models")["models"])

    def ready(self) -> bool:
        status, _, _ = self._request("GET", "/readyz")
        return status == 200

    def metrics(self) -> str:
        return self._request("GET", "/metrics")[2].decode()

    def predict(self, model: str, inputs: Mapping[str, np.ndarray]) -> Prediction:
        """Run ``inputs`` (name -> array, samples first) on ``model``; one input travels as a
        bare ``.npy`` (no zip archive to build and open), several as ``.npz``."""
        buffer = io.BytesIO()
        if len(inputs) == 1:
            (array,) = inputs.values()
            buffer.write(npy.dumps(array))
            kind = NPY
        else:
            np.savez(buffer, **inputs)  # type: ignore[arg-type]
            kind = NPZ
        status, headers, body = self._request(
            "POST",
            f"/v1/models/{model}/predict",
            buffer.getvalue(),
            {"Content-Type": kind, "Accept": f"{NPY}, {NPZ}"},
        )
        if status != 200:
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body.decode(errors="replace")
            raise PredictError(status, f"{model}: {message}")
        lowered = {k.lower(): v for k, v in headers.items()}
        if lowered.get("content-type", "").startswith(NPY):
            outputs = {lowered.get("x-output-name", "output"): npy.loads(body)}
        else:
            with np.load(io.BytesIO(body), allow_pickle=False) as npz:
                outputs = {key: npz[key] for key in npz.files}
        return Prediction(int(lowered.get("x-model-version", "0")), outputs)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()
