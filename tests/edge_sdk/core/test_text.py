"""Foreign text in our one-line messages (edge_sdk.core.text)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.core.text import error_line, one_line


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_any_text_becomes_one_line_within_the_limit(text: str, limit: int) -> None:
    line = one_line(text, limit)
    assert "\n" not in line and "\r" not in line and len(line) <= limit
    assert line == " ".join(text.split()) or line.endswith("…")


def test_an_exception_without_words_is_named_by_its_type() -> None:
    assert error_line(KeyError()) == "KeyError"
    assert error_line(ValueError("bad\n  value")) == "bad value"
