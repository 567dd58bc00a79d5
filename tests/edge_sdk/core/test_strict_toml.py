"""The one strict TOML reader: typing rules, unknown and retired keys, nesting, and each file
kind's one-line wording (agent.toml's dotted keys, a profile's quoted keys)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.core.strict_toml import DottedKeys, QuotedKeys, StrictTable, describe, typed
from edge_sdk.errors import ConfigError, InputError, ProfileError

DOTTED = DottedKeys("agent.toml", ConfigError)
QUOTED = QuotedKeys(ProfileError)


def dotted(table: dict[str, Any], keys: tuple[str, ...] | None = None) -> StrictTable:
    return StrictTable(table, DOTTED, "", keys)


def quoted(table: dict[str, Any]) -> StrictTable:
    return StrictTable(table, QUOTED, "profile board.toml")


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (True, bool, (True, True)),
        (True, int, (False, True)),  # bool is an int in Python, not in a config
        (False, float, (False, False)),
        (3, float, (True, 3.0)),
        (3, int, (True, 3)),
        (2.5, int, (False, 2.5)),
        ("x", str, (True, "x")),
        ({}, dict, (True, {})),
        ([], list, (True, [])),
        ("3", int, (False, "3")),
    ],
)
def test_typing_rules(value: Any, kind: type, expected: tuple[bool, Any]) -> None:
    ok, got = typed(value, kind)
    assert (ok, got) == expected and type(got) is type(expected[1])


def test_describe_cuts_long_values() -> None:
    assert describe(True) == "a boolean true"
    assert describe("x" * 100) == "a string '" + "x" * 56 + "..."


def test_the_two_wordings() -> None:
    with pytest.raises(ConfigError, match=r"^agent.toml: report.interval_s: expected a number, "):
        dotted({"report": {"interval_s": "60"}}).table("report").value("interval_s", float)
    with pytest.raises(ProfileError, match=r"^profile board.toml \[image\]: key 'scale' must be "):
        quoted({"image": {"scale": "x"}}).table("image").value("scale", float)
    with pytest.raises(ConfigError, match=r"^agent.toml: url: missing; set it, e.g. url = \"h\""):
        dotted({}).required("url", str, '"h"')
    with pytest.raises(ProfileError, match=r"^profile board.toml: key 'id' is missing; every"):
        quoted({}).required("id", str)


def test_unknown_keys_upfront_with_a_hint_or_advice() -> None:
    with pytest.raises(ConfigError, match=r"^agent.toml: thread: unknown key; did you mean "):
        dotted({"thread": 1}, ("threads", "name"))
    with pytest.raises(ConfigError, match=r"^agent.toml: zzz: unknown key; remove it$"):
        dotted({"zzz": 1}, ("threads", "name"))
    models = dotted({"models": [{"name": "a", "thread": 2}]}, ("models",))
    with pytest.raises(ConfigError, match=r"models\[0\].thread: .*'models\[0\].threads'\?$"):
        models.tables("models", ("name", "threads"))


def test_an_unknown_key_with_a_newline_stays_one_line() -> None:
    with pytest.raises(InputError) as upfront:
        dotted({"a\nb": 1}, ("a",))
    with pytest.raises(InputError) as after:
        quoted({"a\nb": 1, "x" * 500: 2}).reject_unknown()
    for caught in (upfront, after):
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 300, caught.value
    assert "a\\nb" in str(upfront.value)


def test_unknown_keys_after_reading() -> None:
    table = quoted({"threads": 1, "thread": 2})
    assert table.value("threads", int) == 1
    with pytest.raises(ProfileError, match=r"unknown key 'thread' \(did you mean 'threads'\?\)$"):
        table.reject_unknown()
    quoted({"a": 1}).table("b").reject_unknown()  # an absent sub-table is empty


def test_a_retired_key_gets_its_advice() -> None:
    retired = {"test": "unknown key; it moved to X"}
    with pytest.raises(ConfigError, match=r"^agent.toml: test: unknown key; it moved to X$"):
        StrictTable({"test": {}}, DOTTED, "", ("a",), retired)


def test_arrays_of_tables() -> None:
    assert dotted({}).tables("models") == []
    with pytest.raises(ConfigError, match=r"^agent.toml: models\[1\]: expected a table, got an "):
        dotted({"models": [{}, 3]}).tables("models")
    with pytest.raises(ConfigError, match=r"^agent.toml: models: expected an array, got a table"):
        dotted({"models": {}}).tables("models")
    with pytest.raises(ProfileError, match=r"key 'image' must be a table$"):
        quoted({"image": 3}).table("image")


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            # control characters included: a quoted TOML key may hold "\n"
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=4),
            inner,
        )
    ),
    max_leaves=8,
)


@given(
    document=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), VALUES, max_size=4),
    style=st.sampled_from([DOTTED, QUOTED]),
)
def test_any_document_gives_values_or_one_line(document: dict[str, Any], style: Any) -> None:
    try:
        table = StrictTable(document, style, "t", ("a", "b", "c"))
        for key, kind in (("a", int), ("b", float), ("c", str)):
            value = table.value(key, kind)
            assert value is None or type(value) is kind
        for sub in (table.table("a"), *table.tables("b")):
            sub.value("x", bool)
            sub.reject_unknown()
    except InputError as e:
        assert isinstance(e, style.error) and "\n" not in str(e)
