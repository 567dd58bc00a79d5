"""The one strict reader for parsed TOML documents: ``agent.toml`` and hardware profiles.

A typo in a device config or a profile silently changes how a fleet behaves, so both are read
strictly: every value has the type its key declares (``true`` is not the integer 1; an integer
is a fine float), an unknown key is an error with a "did you mean", and every error is one
line naming the file and the key. :class:`StrictTable` does the typing, the unknown keys and the
nesting; what a key's value may be (a range, a path, a choice) stays with the file that owns the
key, in a subclass (``agent.config_values.ConfigTable``, ``edge_sdk.core.profiles``'s reader).

The two files speak to different people and their one-line errors are worded differently
(and tests hold them to it), so the wording is a :class:`Style`: ``DottedKeys`` for
``agent.toml`` (``agent.toml: broker.url: message``) and ``QuotedKeys`` for a profile
(``profile board.toml [image]: key 'std' message``).

Why not pydantic (``extra="forbid"`` would do much of this): the device installs the agent with
only its runtime beside it, and the agent must not import pydantic, typer or rich (import-linter
forbids it; tests/test_packaging.py checks a real ``edge-agent run``). This module is small,
stdlib-only and shared by both sides, so the device install stays light.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from edge_sdk.errors import InputError

T = TypeVar("T")

# How agent.toml's errors name a TOML type.
TOML_TYPES: Mapping[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table",
    list: "an array",
}


def describe(value: Any) -> str:
    """A value as agent.toml's errors show it: its TOML type, then the value, cut at 60 chars."""
    kind = TOML_TYPES.get(type(value), type(value).__name__)
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"


def typed(value: Any, kind: type[T]) -> tuple[bool, Any]:
    """(whether ``value`` is a ``kind``, the value as one). bool is an int subclass in Python,
    but ``keepalive_s = true`` is a mistake, not 1; an integer is a fine float."""
    if isinstance(value, bool):
        return kind is bool, value
    if kind is float and isinstance(value, int):
        return True, float(value)
    return isinstance(value, kind), value


class Style(Protocol):
    """How one kind of file words its errors; ``where`` is the table's place in the file."""

    @property
    def error(self) -> type[InputError]: ...

    def name(self, where: str, key: str) -> str: ...

    def at(self, where: str, key: str, message: str) -> str: ...

    def unknown(self, where: str, key: str, hint: str | None) -> str: ...

    def wrong_type(self, kind: type, value: Any) -> str: ...

    def missing(self, where: str, key: str, example: str) -> str: ...

    def child(self, where: str, key: str) -> str: ...

    def item(self, where: str, key: str, index: int) -> str: ...


@dataclass(frozen=True)
class DottedKeys:
    """agent.toml's wording: ``FILE: broker.url: message``, keys as a TOML path."""

    file: str
    error: type[InputError]

    def name(self, where: str, key: str) -> str:
        return f"{self.file}: {where}{key}"

    def at(self, where: str, key: str, message: str) -> str:
        return f"{self.name(where, key)}: {message}"

    def unknown(self, where: str, key: str, hint: str | None) -> str:
        advice = f"did you mean '{where}{hint}'?" if hint else "remove it"
        return self.at(where, key, f"unknown key; {advice}")

    def wrong_type(self, kind: type, value: Any) -> str:
        return f"expected {TOML_TYPES[kind]}, got {describe(value)}"

    def missing(self, where: str, key: str, example: str) -> str:
        return f"missing; set it, e.g. {where}{key} = {example}"

    def child(self, where: str, key: str) -> str:
        return f"{where}{key}."

    def item(self, where: str, key: str, index: int) -> str:
        return f"{where}{key}[{index}]."


@dataclass(frozen=True)
class QuotedKeys:
    """A hardware profile's wording: ``profile FILE [table]: key 'name' message``."""

    error: type[InputError]

    def name(self, where: str, key: str) -> str:
        return f"{where}: key '{key}'"

    def at(self, where: str, key: str, message: str) -> str:
        return f"{self.name(where, key)} {message}"

    def unknown(self, where: str, key: str, hint: str | None) -> str:
        suffix = f" (did you mean '{hint}'?)" if hint else ""
        return f"{where}: unknown key '{key}'{suffix}"

    def wrong_type(self, kind: type, value: Any) -> str:
        if kind is dict:
            return "must be a table"
        return f"must be {kind.__name__}, got {type(value).__name__} {value!r}"

    def missing(self, where: str, key: str, example: str) -> str:
        return "is missing; every profile must set it"

    def child(self, where: str, key: str) -> str:
        return f"{where} [{key}]"

    def item(self, where: str, key: str, index: int) -> str:
        return f"{where} [{key}][{index}]"


class StrictTable:
    """One TOML table read strictly. ``keys``, when given, are all the table may hold and are
    checked at once (a misspelt key is then reported as unknown, not as a missing one); every
    key read is remembered, so :meth:`reject_unknown` can refuse the rest afterwards.
    ``retired`` maps a key that used to be valid to the advice shown when it is met."""

    def __init__(
        self,
        table: Mapping[str, Any],
        style: Style,
        where: str,
        keys: Collection[str] | None = None,
        retired: Mapping[str, str] | None = None,
    ) -> None:
        self._table = table
        self._style = style
        self._where = where
        self._keys = keys
        self._used: set[str] = set()
        for key in table:
            if retired and key in retired:
                raise self.fail(key, retired[key])
            if keys is not None and key not in keys:
                raise self._unknown(key, keys)

    def name(self, key: str) -> str:
        """``key`` of this table as errors name it (the file, the table, the key)."""
        return self._style.name(self._where, key)

    def fail(self, key: str, message: str) -> InputError:
        """The one-line error for ``key`` of this table."""
        return self._style.error(self._style.at(self._where, key, message))

    def _unknown(self, key: str, known: Collection[str]) -> InputError:
        hint = difflib.get_close_matches(key, sorted(known), n=1)
        # A quoted TOML key may hold a newline or a control character: shown escaped and cut,
        # so the error stays one line whatever the file holds.
        shown = key if key.isprintable() else repr(key)[1:-1]
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return self._style.error(self._style.unknown(self._where, shown, hint[0] if hint else None))

    def value(self, key: str, kind: type[T]) -> T | None:
        """The value of ``key`` as a ``kind``; ``None`` when the table does not have it."""
        self._used.add(key)
        if key not in self._table:
            return None
        ok, value = typed(self._table[key], kind)
        if not ok:
            raise self.fail(key, self._style.wrong_type(kind, value))
        return value  # type: ignore[no-any-return]

    def required(self, key: str, kind: type[T], example: str = "") -> T:
        value = self.value(key, kind)
        if value is None:
            raise self.fail(key, self._style.missing(self._where, key, example))
        return value

    def table(self, key: str, keys: Collection[str] | None = None) -> Self:
        """The sub-table ``key`` (empty when absent), read by the same kind of reader."""
        value = self.value(key, dict)
        return self._child(value or {}, self._style.child(self._where, key), keys)

    def tables(self, key: str, keys: Collection[str] | None = None) -> list[Self]:
        """The array of tables ``key`` (``[[key]]``); empty when absent."""
        items = self.value(key, list) or []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{i}]", self._style.wrong_type(dict, item))
        return [
            self._child(item, self._style.item(self._where, key, i), keys)
            for i, item in enumerate(items)
        ]

    def _child(self, table: Mapping[str, Any], where: str, keys: Collection[str] | None) -> Self:
        return type(self)(table, self._style, where, keys)

    def has(self, key: str) -> bool:
        return key in self._table

    def reject_unknown(self) -> None:
        """Refuse the first key that was neither declared nor read."""
        known = self._used | set(self._keys or ())
        for key in self._table:
            if key not in known:
                raise self._unknown(key, known)
