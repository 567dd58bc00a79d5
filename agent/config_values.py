"""How ``agent.toml``'s values are read: the core's strict reader (``edge_sdk.core.strict_toml``)
in agent.toml's wording, with the value rules every section shares (bounded integers and
numbers, identifiers, paths relative to the file).

Every problem is a one-line :class:`ConfigError` naming the file and the dotted key, because the
person reading it is at a device console or in a service log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_sdk.core.strict_toml import DottedKeys, StrictTable
from edge_sdk.core.wire import topics
from edge_sdk.errors import ConfigError, InputError

# Larger integers are typos or attacks: 2**53 - 1 is also the largest a JSON reader keeps exact.
MAX_INTEGER = 2**53 - 1
MAX_NUMBER = 1e9  # seconds (~31 years), ratios, milliseconds


def check_identifier(value: str, what: str) -> str:
    """``edge_sdk.core.wire.topics.check_identifier``, as a config error: ids end up inside MQTT
    topics and broker ACL patterns, where '+', '#' and '/' would turn one device's topic into a
    wildcard or another device's subtree."""
    try:
        return topics.check_identifier(value, what)
    except InputError as e:
        raise ConfigError(str(e)) from e


def keys_of(cls: type[Any], skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The keys a section may hold: its dataclass's fields, less those derived from others."""
    return tuple(k for k in cls.__dataclass_fields__ if k not in skip)


class ConfigTable(StrictTable):
    """One table of ``agent.toml``; ``file`` names it in every error. Unknown keys are refused
    as soon as the table is opened (a misspelt key would otherwise be reported as missing)."""

    @classmethod
    def top(
        cls,
        document: Mapping[str, Any],
        file: str,
        keys: tuple[str, ...],
        retired: Mapping[str, str],
    ) -> ConfigTable:
        return cls(document, DottedKeys(file, ConfigError), "", keys, retired)

    def string(self, key: str, default: str) -> str:
        value = self.value(key, str)
        return default if value is None else value

    def integer(self, key: str, default: int, low: int, high: int | None = None) -> int:
        value = self.value(key, int)
        if value is None:
            return default
        if high is None and value > MAX_INTEGER:
            raise self.fail(key, f"must be an integer between {low} and {MAX_INTEGER}, got {value}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise self.fail(key, f"must be an integer {bounds}, got {value}")
        return value

    def number(self, key: str, default: float, *, positive: bool) -> float:
        value = self.value(key, float)
        if value is None:
            return default
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            bounds = "> 0" if positive else ">= 0"
            raise self.fail(key, f"must be a finite number {bounds}, got {value}")
        if value > MAX_NUMBER:
            # Durations this long overflow timers (Event.wait(1e300) raises) and mean "never".
            raise self.fail(key, f"must be at most {MAX_NUMBER:g}, got {value:g}")
        return value

    def identifier(self, key: str, default: str | None) -> str:
        value = (
            self.required(key, str, '"cam-01"') if default is None else self.string(key, default)
        )
        return check_identifier(value, self.name(key))

    def path(
        self, key: str, base: Path, example: str, *, required: bool, must_exist: bool
    ) -> Path | None:
        """A path, relative to ``base`` (the file's directory) unless absolute, so the agent
        behaves the same from any working directory (systemd starts it in /)."""
        value = self.required(key, str, f'"{example}"') if required else self.value(key, str)
        if value is None:
            return None
        if not value:
            raise self.fail(key, "must not be empty; give a path")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if must_exist and not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise self.fail(key, f"{path} {problem}; fix the path or put the file there")
        return path
