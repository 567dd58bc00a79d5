"""The last stage of a build (edge_sdk.build.packing): the bundle written as it was packed,
signed over its files with the manifest's identity, or left unsigned without keys."""

from __future__ import annotations

from pathlib import Path

from tuf.api.metadata import Metadata

from edge_sdk.build.packing import sign, write_signed
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.trust import signed_custom
from testing.agents import make_bundle


def test_without_keys_the_bundle_is_written_unsigned(tmp_path: Path, signing_keys: Path) -> None:
    packed = make_bundle(signing_keys, 3, signed=False)
    said: list[str] = []
    target = tmp_path / "digits-v3-x86-64.edgebundle"
    written = write_signed(target, packed.manifest, packed.artifact, packed.golden, (), said.append)
    assert written is False and sign(packed, ()) is None
    back = read_bundle(target)
    assert back.signatures is None and back.manifest == packed.manifest
    assert (back.artifact, back.golden) == (packed.artifact, packed.golden)
    assert said == ["writing the bundle"]


def test_signed_over_its_files_with_the_manifest_identity(
    tmp_path: Path, signing_keys: Path
) -> None:
    packed = make_bundle(signing_keys, 3, signed=False)
    target = tmp_path / "digits-v3-x86-64.edgebundle"
    keys = (signing_keys / "online-1.key",)
    signed = write_signed(
        target, packed.manifest, packed.artifact, packed.golden, keys, lambda _: None
    )
    back = read_bundle(target)
    assert signed is True and back.signatures is not None
    targets = Metadata.from_bytes(back.signatures).signed
    assert signed_custom(targets) == packed.manifest.identity()
