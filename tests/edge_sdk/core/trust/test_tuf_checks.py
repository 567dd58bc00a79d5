"""What the pinned root and the signatures share: foreign text kept to one line, parse errors in
words, UTC expiries, and metadata refused before verification when canonical JSON cannot sign
it. The verdicts they lead to are in test_trust.py and test_trust_fuzz.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]
from tuf.api.metadata import Metadata, Targets  # type: ignore[attr-defined]

from edge_sdk.core.trust.tuf_checks import describe, iso, malformed, one_line, utc


def test_one_line_flattens_and_caps_foreign_text() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    capped = one_line("x" * 500, limit=20)
    assert len(capped) == 20 and capped.endswith("…")


def test_describe_names_a_missing_field_from_the_cause() -> None:
    try:
        try:
            raise KeyError("signed")
        except KeyError as inner:
            raise ValueError("wrapper") from inner
    except ValueError as e:
        assert describe(e) == "missing field 'signed'"
    assert describe(ValueError()) == "ValueError"


def test_utc_takes_naive_times_as_utc_and_converts_others() -> None:
    naive = datetime(2026, 1, 31, 12, 0, 0)
    assert utc(naive) == naive.replace(tzinfo=UTC)
    plus_two = datetime(2026, 1, 31, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso(plus_two) == "2026-01-31T12:00:00Z"


def test_malformed_is_empty_for_signed_metadata_and_names_a_float() -> None:
    md = Metadata(Targets(expires=datetime.now(UTC) + timedelta(days=1)))
    md.sign(CryptoSigner.generate_ed25519())
    assert malformed(md) == ""
    md.signed.unrecognized_fields["note"] = 0.5
    assert "canonical JSON" in malformed(md)
