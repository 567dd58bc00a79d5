"""The signed mirror list on a release's manifest targets, on python-tuf objects in memory; the
stores it names serving real devices are in tests/edge_sdk/fleet/test_stores.py."""

from __future__ import annotations

from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge_sdk.signing.release_mirrors import MIRRORS, with_mirrors

HASHES = {"sha256": "00" * 32}


def target(path: str, custom: dict[str, object] | None = None) -> TargetFile:
    return TargetFile(1, dict(HASHES), path, {"custom": custom or {"chunks": []}})


CURRENT = {
    "digits/3/manifest.json": target("digits/3/manifest.json"),
    "digits/3/model.onnx": target("digits/3/model.onnx"),
    "digits/3/arm64/manifest.json": target("digits/3/arm64/manifest.json"),
    "digits/4/manifest.json": target("digits/4/manifest.json"),
}
STORES = ["https://a.example/", "https://b.example/"]


def test_every_variant_manifest_of_the_release_gets_the_list_and_nothing_else() -> None:
    changed = with_mirrors(CURRENT, "digits", 3, STORES)
    assert changed is not None
    listed = {p for p, t in changed.items() if MIRRORS in t.unrecognized_fields["custom"]}
    assert listed == {"digits/3/manifest.json", "digits/3/arm64/manifest.json"}
    assert changed["digits/3/manifest.json"].unrecognized_fields["custom"][MIRRORS] == STORES
    assert changed["digits/3/manifest.json"].unrecognized_fields["custom"]["chunks"] == []


def test_the_same_list_again_changes_nothing_and_an_empty_one_clears_it() -> None:
    changed = with_mirrors(CURRENT, "digits", 3, STORES)
    assert changed is not None
    assert with_mirrors(changed, "digits", 3, list(STORES)) is None
    cleared = with_mirrors(changed, "digits", 3, [])
    assert cleared is not None
    assert all(MIRRORS not in t.unrecognized_fields["custom"] for t in cleared.values())
    assert with_mirrors(CURRENT, "digits", 3, []) is None
