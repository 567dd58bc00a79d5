"""JSON Schemas for editors, derived from the frozen dataclasses the strict reader fills.

An editor with a TOML language server (taplo, Even Better TOML) completes keys and flags an
unknown one while ``agent.toml`` or a profile is typed, before the device or the build refuses
it. The schema says the keys and their types; the rules on values (ranges, choices,
paths, URLs) stay with the readers, which remain the authority. Each TOML key is its dataclass
field's name, so the schema is derived from those declarations rather than written twice;
``docs/schemas/`` holds the generated files and a test keeps them current.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_SCALARS: Mapping[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    Path: "string",
}


def dataclass_schema(
    cls: type,
    title: str,
    *,
    skip: Mapping[type, Collection[str]] | None = None,
    replace: Mapping[tuple[type, str], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The schema of a TOML document read into ``cls``: one property per field, none other
    allowed. ``skip`` leaves out fields derived from others (a URL's host); ``replace`` gives a
    field's schema where its TOML form is not its type (a profile named by a string)."""
    return {"$schema": DRAFT, "title": title, **_object(cls, skip or {}, replace or {})}


def _object(
    cls: type,
    skip: Mapping[type, Collection[str]],
    replace: Mapping[tuple[type, str], Mapping[str, Any]],
) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip.get(cls, ()):
            continue
        # No defaults: a field's default is not always the reader's (a profile's int8_kernels
        # depends on its arch), and a wrong hint in an editor is worse than none.
        properties[f.name] = dict(replace.get((cls, f.name)) or _of(hints[f.name], skip, replace))
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _of(
    hint: Any,
    skip: Mapping[type, Collection[str]],
    replace: Mapping[tuple[type, str], Mapping[str, Any]],
) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (types.UnionType, typing.Union):
        present = [a for a in args if a is not type(None)]  # None: the key is left out
        return _of(present[0], skip, replace) if len(present) == 1 else {}
    if origin is tuple:
        return {"type": "array", "items": _of(args[0], skip, replace)}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _object(hint, skip, replace)
    return {}
