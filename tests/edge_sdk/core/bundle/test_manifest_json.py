"""manifest.json read strictly (edge_sdk.core.bundle.manifest_json): what the JSON layer refuses
before
any field is looked at, and how a wrong field is named in the one-line error."""

from __future__ import annotations

import pytest

from edge_sdk.core.bundle.manifest_json import ManifestFields, parse_manifest_json, short_error
from edge_sdk.errors import BundleError


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": 1, "a": 2}', "appears twice"),
        (b"[1, 2]", "a JSON array, not an object"),
        (b"\xff", "not valid JSON"),
    ],
)
def test_strict_json_refusals(raw: bytes, why: str) -> None:
    with pytest.raises(BundleError, match=why) as caught:
        parse_manifest_json(raw, "m.edgebundle")
    assert str(caught.value).startswith("m.edgebundle: manifest.json")


def test_a_wrong_field_is_named_with_its_path() -> None:
    fields = ManifestFields("m.edgebundle")
    doc = parse_manifest_json(b'{"golden": {"count": "8"}, "name": 7}', "m.edgebundle")
    with pytest.raises(BundleError, match=r"field 'golden\.count' must be an integer"):
        fields.integer(doc["golden"], "count", 1, 1024, where="golden")
    with pytest.raises(BundleError, match="must be a string of at most 256 characters"):
        fields.text(doc, "name")
    with pytest.raises(BundleError, match=r"no field 'created'"):
        fields.text(doc, "created")
    assert fields.obj(doc, "report", optional=True) == {}


def test_short_error_is_one_bounded_line() -> None:
    text = short_error(ValueError("a\nb   " + "x" * 500), limit=40)
    assert "\n" not in text and len(text) == 40 and text.endswith("…")
