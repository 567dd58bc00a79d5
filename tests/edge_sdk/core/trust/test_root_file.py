"""The pinned trust root read from disk: a keyring's root.json, or one line naming the file for
anything that is not self-signed root metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_sdk.core.trust.root_file import MAX_ROOT_BYTES, ROOT_JSON, load_trust_root
from edge_sdk.errors import KeyFileError


def test_a_keyring_directory_or_its_root_json_give_the_same_root(signing_keys: Path) -> None:
    from_dir, from_file = load_trust_root(signing_keys), load_trust_root(signing_keys / ROOT_JSON)
    assert from_dir == from_file and from_dir.version == 1


def test_a_directory_without_a_root_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"has no root.json; create a keyring with `edge-sdk"):
        load_trust_root(tmp_path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty, not a trust root"),
        (b" \n", "is empty, not a trust root"),
        (b"x" * (MAX_ROOT_BYTES + 1), "more than the 1 MiB allowed"),
    ],
)
def test_what_is_not_a_root_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "root.json"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=words) as info:
        load_trust_root(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_other_signed_metadata_is_not_a_root(signing_keys: Path, tmp_path: Path) -> None:
    # A public key where the root should be: read, then refused by the root's own checks.
    public = next(signing_keys.glob("*.pub"), None)
    assert public is not None
    with pytest.raises(KeyFileError) as info:
        load_trust_root(public)
    assert str(public) in str(info.value) and "\n" not in str(info.value)
