"""manifest.json read as hostile input: strict JSON, then each field of the type it must have.

A bundle's manifest is untrusted until its signatures verify, and ``edge-sdk bundle inspect``
shows unsigned ones. So the JSON is strict (no NaN or Infinity, no number that overflows to
infinity, no key given twice), its depth is counted before parsing and bounded after, and each
field is read through :class:`ManifestFields`, which turns a wrong one into one ``BundleError``
line naming the field. ``edge_sdk.core.bundle.manifest`` builds the Manifest from what this accepts.
"""

from __future__ import annotations

import json
import math
from typing import Any

from edge_sdk.core.jsondepth import too_deep
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.text import one_line
from edge_sdk.errors import BundleError

MAX_JSON_DEPTH = 32  # the build report nests 4 deep
MAX_TEXT = 256
# A symbolic dimension is written as onnx's shape inference names it: an expression such as a
# detector's anchor count over its strides runs to hundreds of characters.
MAX_DIM_NAME = 4096
MAX_TENSORS = 1024
MAX_RANK = 32
MAX_DIM = (1 << 31) - 1


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which of two equal keys wins: a forged value must not hide behind one.
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"the key {key[:80]!r} appears twice in one object")
        doc[key] = value
    return doc


def parse_manifest_json(data: bytes, source: str) -> dict[str, Any]:
    """manifest.json as a JSON object: strict JSON (no NaN or Infinity, no number that
    overflows to infinity such as 1e999), nested at most MAX_JSON_DEPTH deep."""
    try:
        if too_deep(data, MAX_JSON_DEPTH):
            raise RecursionError
        doc = json.loads(data, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except RecursionError as e:
        raise BundleError(
            f"{source}: manifest.json nests too deep to read (at most {MAX_JSON_DEPTH} levels)"
        ) from e
    except ValueError as e:  # also UnicodeDecodeError and json.JSONDecodeError
        raise BundleError(f"{source}: manifest.json is not valid JSON ({short_error(e)})") from e
    if not isinstance(doc, dict):
        raise BundleError(
            f"{source}: manifest.json is malformed (a JSON {_json_type(doc)}, not an object)"
        )
    problem = _json_problem(doc)
    if problem:
        raise BundleError(f"{source}: manifest.json is malformed ({problem})")
    return doc


def _json_problem(doc: Any) -> str:
    """Why a parsed JSON value is unfit to keep ('' when it is fine); walked without recursion,
    so no depth reaches the interpreter's limit in code that later prints or re-encodes it."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return "a number out of range (such as 1e999)"
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"values nested more than {MAX_JSON_DEPTH} levels deep"
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return ""


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else "object"


def short_error(error: BaseException, limit: int = 120) -> str:
    """An error's text on one line of at most ``limit`` characters, to quote in a message."""
    return one_line(error, limit)


class ManifestFields:
    """Typed reads of manifest fields; each wrong one is a BundleError naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _get(self, doc: dict[str, Any], key: str, where: str) -> Any:
        if key not in doc:
            raise BundleError(
                f"{self.source}: manifest.json is malformed (no field {_path(where, key)!r})"
            )
        return doc[key]

    def _wrong(self, where: str, key: str, want: str, value: Any) -> BundleError:
        return BundleError(
            f"{self.source}: manifest.json field {_path(where, key)!r} must be {want}, "
            f"not a JSON {_json_type(value)}"
        )

    def text(self, doc: dict[str, Any], key: str, *, where: str = "") -> str:
        value = self._get(doc, key, where)
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise self._wrong(where, key, f"a string of at most {MAX_TEXT} characters", value)
        return value

    def integer(
        self, doc: dict[str, Any], key: str, low: int, high: int, *, where: str = ""
    ) -> int:
        value = self._get(doc, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(where, key, "an integer", value)
        if not low <= value <= high:
            raise BundleError(
                f"{self.source}: manifest.json field {_path(where, key)!r} is out of range "
                f"({low} to {high})"
            )
        return value

    def number(self, doc: dict[str, Any], key: str, *, where: str = "") -> float:
        value = self._get(doc, key, where)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(where, key, "a number", value)
        number = float(value) if abs(value) < 1e308 else math.inf
        if not math.isfinite(number) or number < 0:
            raise BundleError(
                f"{self.source}: manifest.json field {_path(where, key)!r} must be a finite "
                "number >= 0"
            )
        return number

    def obj(
        self, doc: dict[str, Any], key: str, *, where: str = "", optional: bool = False
    ) -> dict[str, Any]:
        if optional and key not in doc:
            return {}
        value = self._get(doc, key, where)
        if not isinstance(value, dict):
            raise self._wrong(where, key, "an object", value)
        return value

    def tensors(self, doc: dict[str, Any], key: str) -> tuple[TensorSpec, ...]:
        value = self._get(doc, key, "")
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_TENSORS:
            raise self._wrong("", key, f"a list of 1 to {MAX_TENSORS} tensors", value)
        specs = []
        for i, entry in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(entry, dict):
                raise self._wrong("", where, "an object", entry)
            shape = self._get(entry, "shape", where)
            if not isinstance(shape, list) or len(shape) > MAX_RANK:
                raise self._wrong(where, "shape", f"a list of at most {MAX_RANK} dimensions", shape)
            dims: list[int | str] = []
            for d in shape:
                if isinstance(d, bool) or not isinstance(d, int | str):
                    raise self._wrong(where, "shape", "a list of integers and names", d)
                out_of_range = d > MAX_DIM if isinstance(d, int) else len(d) > MAX_DIM_NAME
                if (isinstance(d, int) and d < 0) or out_of_range:
                    raise BundleError(
                        f"{self.source}: manifest.json field {where}.shape holds a dimension "
                        "out of range"
                    )
                dims.append(d)
            layout = self.text(entry, "layout", where=where) if "layout" in entry else ""
            specs.append(
                TensorSpec(
                    self.text(entry, "name", where=where),
                    tuple(dims),
                    self.text(entry, "dtype", where=where),
                    layout,
                )
            )
        return tuple(specs)


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
