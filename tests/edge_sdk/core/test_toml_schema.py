"""The editors' JSON Schemas: the committed files are what the declarations give, and every
key a real agent.toml or built-in profile holds is in them with its type (an unknown key is not).

Regenerate the files with:
    python -c "from tests.edge_sdk.core.test_toml_schema import write; write()"
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.config import config_schema
from edge_sdk.core.profiles import builtin_profile_dir, profile_schema
from tests.agent.test_config import FULL

SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "schemas"
FILES = {"agent.toml.json": config_schema, "profile.json": profile_schema}
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def _text(name: str) -> str:
    return json.dumps(FILES[name](), indent=2) + "\n"


def write() -> None:
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (SCHEMAS / name).write_text(_text(name))


def problems(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """The subset of JSON Schema the generator writes: type, enum, properties, items."""
    if "enum" in schema:
        return [] if value in schema["enum"] else [f"{where}: {value!r} not in the enum"]
    kind = schema.get("type")
    if kind is None:
        return []
    if isinstance(value, bool) != (kind == "boolean") or not isinstance(value, _TYPES[kind]):
        return [f"{where}: {value!r} is not {kind}"]
    if kind == "array":
        return [
            p for i, v in enumerate(value) for p in problems(v, schema["items"], f"{where}[{i}]")
        ]
    if kind == "object":
        found = []
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}: unknown")
            else:
                found += problems(item, schema["properties"][key], f"{where}.{key}")
        return found
    return []


@pytest.mark.parametrize("name", sorted(FILES))
def test_committed_schema_is_current(name: str) -> None:
    assert (SCHEMAS / name).read_text() == _text(name), f"regenerate: see {__name__}'s docstring"


def test_a_full_agent_toml_fits_and_a_typo_does_not() -> None:
    document = tomllib.loads(FULL)
    assert problems(document, config_schema()) == []
    document["broker"]["keepalive"] = 3
    document["report"]["interval_s"] = "60"
    assert problems(document, config_schema()) == [
        ".broker.keepalive: unknown",
        ".report.interval_s: '60' is not number",
    ]


@pytest.mark.parametrize("path", sorted(builtin_profile_dir().glob("*.toml")), ids=str)
def test_every_builtin_profile_fits(path: Path) -> None:
    assert problems(tomllib.loads(path.read_text()), profile_schema()) == []
