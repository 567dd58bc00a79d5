"""A small Python client for the agent's local inference API (standard library only).

    from edge_sdk.client import InferenceClient
    with InferenceClient("http://127.0.0.1:8470") as client:        # or unix_socket="/run/..."
        answer = client.predict("digits", {"input": batch})
        answer.version, answer.outputs["logits"]

Tensors travel as binary both ways (no JSON parsing of numbers on either side): over ``/v1``
as ``.npy``/``.npz``, over the Open Inference Protocol (``protocol="v2"``, what Triton, KServe
and this agent speak) with the binary tensor data extension. One client keeps one keep-alive
connection: use one per thread.
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
from urllib.parse import quote, urlsplit

import numpy as np

from edge_sdk.core import npy
from edge_sdk.errors import InputError, PredictError

NPZ = "application/x-npz"
NPY = "application/x-npy"


_V2_DTYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
_V2_NAMES = {v: k for k, v in _V2_DTYPES.items()}


@dataclass(frozen=True)
class Prediction:
    version: int
    outputs: dict[str, np.ndarray]
    label: str = ""  # the version as its user wrote it ("1.2.0"), over v2


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
        protocol: str = "v1",
    ) -> None:
        if protocol not in ("v1", "v2"):
            raise InputError(f"protocol {protocol!r} must be 'v1' or 'v2'")
        self.protocol = protocol
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

    def live(self) -> bool:
        """Whether the agent answers (``/v2/health/live``)."""
        return self._request("GET", "/v2/health/live")[0] == 200

    def server_metadata(self) -> dict[str, Any]:
        return dict(self._json("/v2"))

    def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        """The protocol's model metadata (``versions``, ``inputs``, ``outputs`` with datatypes
        and ``-1`` for dynamic dimensions); ``version`` "" is the one serving."""
        return dict(self._json(_v2_path(model, version)))

    def models(self) -> list[dict[str, Any]]:
        return list(self._json("/v1/models")["models"])

    def ready(self) -> bool:
        status, _, _ = self._request("GET", "/readyz")
        return status == 200

    def metrics(self) -> str:
        return self._request("GET", "/metrics")[2].decode()

    def predict(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str = "",
        outputs: list[str] | None = None,
    ) -> Prediction:
        """Run ``inputs`` (name -> array, samples first) on ``model``. Over ``/v1`` one input
        travels as a bare ``.npy`` (no zip archive to build and open), several as ``.npz``.
        Over v2, ``version`` ("1.2.0"; "" for the one serving) pins the version and
        ``outputs`` names the outputs wanted (``None``: all)."""
        if self.protocol == "v2":
            return self._predict_v2(model, inputs, version, outputs)
        if version or outputs is not None:
            raise InputError("version and outputs are for protocol='v2'")
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
            arrays = {lowered.get("x-output-name", "output"): npy.loads(body)}
        else:
            with np.load(io.BytesIO(body), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        return Prediction(int(lowered.get("x-model-version", "0")), arrays)

    def _predict_v2(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        version: str,
        outputs: list[str] | None,
    ) -> Prediction:
        entries, blobs = [], []
        for name, value in inputs.items():
            array = np.ascontiguousarray(value)
            kind = _V2_NAMES.get(array.dtype.name)
            if kind is None:
                raise InputError(f"input '{name}' is {array.dtype}: not a protocol datatype")
            data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entries.append(
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": kind,
                    "parameters": {"binary_data_size": len(data)},
                }
            )
            blobs.append(data)
        doc: dict[str, Any] = {"inputs": entries, "parameters": {"binary_data_output": True}}
        if outputs is not None:
            doc["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
        head = json.dumps(doc).encode()
        status, headers, body = self._request(
            "POST",
            _v2_path(model, version) + "/infer",
            b"".join([head, *blobs]),
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(head)),
            },
        )
        if status != 200:
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body.decode(errors="replace")
            raise PredictError(status, f"{model}: {message}")
        lowered = {k.lower(): v for k, v in headers.items()}
        length = int(lowered.get("inference-header-content-length", len(body)))
        answer = json.loads(body[:length])
        offset = length
        result: dict[str, np.ndarray] = {}
        for entry in answer["outputs"]:
            dtype = np.dtype(_V2_DTYPES[entry["datatype"]]).newbyteorder("<")
            size = entry.get("parameters", {}).get("binary_data_size")
            if size is None:
                array = np.asarray(entry["data"], dtype=dtype)
            else:
                array = np.frombuffer(
                    body, dtype=dtype, count=size // dtype.itemsize, offset=offset
                )
                offset += size
            result[entry["name"]] = array.reshape(entry["shape"])
        return Prediction(
            int(lowered.get("x-model-version", "0")), result, str(answer.get("model_version", ""))
        )

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def _v2_path(model: str, version: str) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{quote(version, safe='')}" if version else path
