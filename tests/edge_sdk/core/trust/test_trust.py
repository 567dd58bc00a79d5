"""The pure trust core: roots, signing and verifying files, all on bytes in memory."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Targets

from edge_sdk.core.trust.pinned_root import TrustRoot
from edge_sdk.core.trust.signatures import add_signatures, sign_files, signed_custom, verify_files
from edge_sdk.errors import (
    BundleError,
    EdgeSdkError,
    ExpiredError,
    KeyFileError,
    TamperedError,
    ThresholdError,
    TrustError,
    UnknownKeyError,
    UnsignedError,
)

FILES = {"model.onnx": b"\x08\x01onnx-bytes" * 4, "manifest.json": b'{"name": "m"}'}
LATER = datetime.now(UTC) + timedelta(days=30)


@dataclass
class Ring:
    root_signer: CryptoSigner
    online: list[CryptoSigner]
    root_json: bytes

    @property
    def trust(self) -> TrustRoot:
        return TrustRoot.from_bytes(self.root_json, "root.json")


def make_ring(online: int = 1, threshold: int = 1, *, days: int = 365) -> Ring:
    root_signer = CryptoSigner.generate_ed25519()
    signers = [CryptoSigner.generate_ed25519() for _ in range(online)]
    root = Root(expires=datetime.now(UTC) + timedelta(days=days))
    root.add_key(root_signer.public_key, "root")
    for signer in signers:
        for role in ("targets", "snapshot", "timestamp"):
            root.add_key(signer.public_key, role)
    root.roles["targets"].threshold = threshold
    md = Metadata(root)
    md.sign(root_signer)
    return Ring(root_signer, signers, md.to_bytes())


def one_line(err: pytest.ExceptionInfo[EdgeSdkError]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def edit(targets_json: bytes, change: dict[str, object]) -> bytes:
    doc = json.loads(targets_json)
    doc["signed"].update(change)
    return json.dumps(doc).encode()


def test_good_signature_verifies_and_returns_signed_targets() -> None:
    ring = make_ring()
    signed = sign_files(FILES, ring.online, expires=LATER, custom={"profile": "jetson-orin"})
    targets = verify_files(ring.trust, signed, FILES)
    assert isinstance(targets, Targets)
    assert set(targets.targets) == set(FILES)
    assert targets.targets["model.onnx"].length == len(FILES["model.onnx"])
    assert "sha256" in targets.targets["model.onnx"].hashes
    assert signed_custom(targets) == {"profile": "jetson-orin"}


def test_custom_defaults_to_empty() -> None:
    ring = make_ring()
    assert (
        signed_custom(
            verify_files(ring.trust, sign_files(FILES, ring.online, expires=LATER), FILES)
        )
        == {}
    )


def test_python_tuf_accepts_the_metadata_as_is() -> None:
    ring = make_ring()
    signed = sign_files(FILES, ring.online, expires=LATER)
    root_md = Metadata[Root].from_bytes(ring.root_json)
    targets_md = Metadata[Targets].from_bytes(signed)
    root_md.signed.verify_delegate("targets", targets_md.signed_bytes, targets_md.signatures)
    root_md.verify_delegate("targets", targets_md)
    for name, data in FILES.items():
        targets_md.signed.targets[name].verify_length_and_hashes(data)


def test_no_signatures_file_is_unsigned() -> None:
    with pytest.raises(UnsignedError) as err:
        verify_files(make_ring().trust, None, FILES)
    assert "not signed" in one_line(err)


def test_metadata_without_signatures_is_unsigned() -> None:
    ring = make_ring()
    doc = json.loads(sign_files(FILES, ring.online, expires=LATER))
    doc["signatures"] = []
    with pytest.raises(UnsignedError) as err:
        verify_files(ring.trust, json.dumps(doc).encode(), FILES)
    one_line(err)


def test_key_not_in_root_is_unknown() -> None:
    ring = make_ring()
    stranger = CryptoSigner.generate_ed25519()
    signed = sign_files(FILES, [stranger], expires=LATER)
    with pytest.raises(UnknownKeyError) as err:
        verify_files(ring.trust, signed, FILES)
    message = one_line(err)
    assert stranger.public_key.keyid[:12] in message
    assert "root.json" in message


def test_root_key_is_not_a_targets_key() -> None:
    ring = make_ring()
    with pytest.raises(UnknownKeyError):
        verify_files(ring.trust, sign_files(FILES, [ring.root_signer], expires=LATER), FILES)


def test_below_threshold_then_add_signatures_meets_it() -> None:
    ring = make_ring(online=2, threshold=2)
    signed = sign_files(FILES, ring.online[:1], expires=LATER)
    with pytest.raises(ThresholdError) as err:
        verify_files(ring.trust, signed, FILES)
    assert "1 of 2 required signatures" in one_line(err)

    cosigned = add_signatures(signed, ring.online[1:])
    md = Metadata[Targets].from_bytes(cosigned)
    assert set(md.signatures) == {s.public_key.keyid for s in ring.online}
    assert md.signed == Metadata[Targets].from_bytes(signed).signed
    verify_files(ring.trust, cosigned, FILES)


def test_unknown_extra_signature_does_not_count_toward_threshold() -> None:
    ring = make_ring(online=2, threshold=2)
    signed = sign_files(FILES, [ring.online[0], CryptoSigner.generate_ed25519()], expires=LATER)
    with pytest.raises(ThresholdError):
        verify_files(ring.trust, signed, FILES)


@pytest.mark.parametrize("name", sorted(FILES))
def test_any_flipped_byte_is_tampering_naming_the_file(name: str) -> None:
    ring = make_ring()
    trust = ring.trust
    signed = sign_files(FILES, ring.online, expires=LATER)
    original = FILES[name]
    for i in range(len(original)):
        changed = bytearray(original)
        changed[i] ^= 0x01
        with pytest.raises(TamperedError) as err:
            verify_files(trust, signed, {**FILES, name: bytes(changed)})
        assert repr(name) in one_line(err)


def test_truncated_file_is_tampering() -> None:
    ring = make_ring()
    signed = sign_files(FILES, ring.online, expires=LATER)
    with pytest.raises(TamperedError, match=r"model\.onnx"):
        verify_files(ring.trust, signed, {**FILES, "model.onnx": FILES["model.onnx"][:-1]})


@pytest.mark.parametrize(
    "change",
    [
        {"custom": {"profile": "raspberry-pi-4"}},
        {"version": 7},
        {"expires": "2099-01-01T00:00:00Z"},
    ],
)
def test_signed_metadata_edited_after_signing_is_tampering(change: dict[str, object]) -> None:
    ring = make_ring()
    signed = sign_files(FILES, ring.online, expires=LATER, custom={"profile": "jetson-orin"})
    with pytest.raises(TamperedError) as err:
        verify_files(ring.trust, edit(signed, change), FILES)
    assert "modified after signing" in one_line(err)


def test_edited_hash_in_signed_metadata_is_tampering() -> None:
    ring = make_ring()
    doc = json.loads(sign_files(FILES, ring.online, expires=LATER))
    evil = b"evil model"
    doc["signed"]["targets"]["model.onnx"] = {
        "length": len(evil),
        "hashes": {"sha256": hashlib.sha256(evil).hexdigest()},
    }
    with pytest.raises(TamperedError):
        verify_files(ring.trust, json.dumps(doc).encode(), {**FILES, "model.onnx": evil})


def test_malformed_signature_from_trusted_key_is_tampering() -> None:
    ring = make_ring()
    doc = json.loads(sign_files(FILES, ring.online, expires=LATER))
    doc["signatures"][0]["sig"] = "zz-not-hex"
    with pytest.raises(TamperedError) as err:
        verify_files(ring.trust, json.dumps(doc).encode(), FILES)
    one_line(err)


def test_expired_signatures() -> None:
    ring = make_ring()
    signed = sign_files(FILES, ring.online, expires=datetime.now(UTC) + timedelta(hours=1))
    verify_files(ring.trust, signed, FILES)
    with pytest.raises(ExpiredError) as err:
        verify_files(ring.trust, signed, FILES, now=datetime.now(UTC) + timedelta(days=1))
    assert "expired" in one_line(err)
    past = sign_files(FILES, ring.online, expires=datetime.now(UTC) - timedelta(seconds=5))
    with pytest.raises(ExpiredError):
        verify_files(ring.trust, past, FILES)


def test_expired_trust_root() -> None:
    ring = make_ring(days=1)
    signed = sign_files(FILES, ring.online, expires=LATER)
    with pytest.raises(ExpiredError) as err:
        verify_files(ring.trust, signed, FILES, now=datetime.now(UTC) + timedelta(days=2))
    assert "trust root" in one_line(err)


def test_missing_file_is_tampering() -> None:
    ring = make_ring()
    signed = sign_files(FILES, ring.online, expires=LATER)
    with pytest.raises(TamperedError) as err:
        verify_files(ring.trust, signed, {"manifest.json": FILES["manifest.json"]})
    assert "'model.onnx'" in one_line(err) and "missing" in str(err.value)


def test_extra_file_is_tampering() -> None:
    ring = make_ring()
    signed = sign_files(FILES, ring.online, expires=LATER)
    with pytest.raises(TamperedError) as err:
        verify_files(ring.trust, signed, {**FILES, "payload.sh": b"rm -rf /"})
    assert "'payload.sh'" in one_line(err) and "not covered" in str(err.value)


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xfe garbage", b"[]", b'{"signed": {}}', b"not json at all"]
)
def test_malformed_targets_is_bundle_error(data: bytes) -> None:
    with pytest.raises(BundleError) as err:
        verify_files(make_ring().trust, data, FILES)
    one_line(err)


def test_root_metadata_in_place_of_targets_is_bundle_error() -> None:
    ring = make_ring()
    with pytest.raises(BundleError, match="root metadata, not targets"):
        verify_files(ring.trust, ring.root_json, FILES)
    with pytest.raises(BundleError):
        add_signatures(ring.root_json, ring.online)


@pytest.mark.parametrize("data", [b"", b"\x00\x01\x02", b"{}", b'{"signed": 1, "signatures": []}'])
def test_malformed_root_is_key_file_error_naming_source(data: bytes) -> None:
    with pytest.raises(KeyFileError) as err:
        TrustRoot.from_bytes(data, "trust.json")
    message = one_line(err)
    assert message.startswith("trust.json is not TUF root metadata")
    assert "edge-sdk keys init" in message


def test_targets_metadata_is_not_a_trust_root() -> None:
    ring = make_ring()
    with pytest.raises(KeyFileError, match="targets metadata, not root"):
        TrustRoot.from_bytes(sign_files(FILES, ring.online, expires=LATER), "trust.json")


def test_root_not_self_signed_is_rejected() -> None:
    ring = make_ring()
    doc = json.loads(ring.root_json)
    doc["signed"]["roles"]["targets"]["threshold"] = 5  # an edit the root key never signed
    with pytest.raises(KeyFileError, match="not signed by its own root key"):
        TrustRoot.from_bytes(json.dumps(doc).encode(), "root.json")
    doc = json.loads(ring.root_json)
    doc["signatures"] = []
    with pytest.raises(KeyFileError):
        TrustRoot.from_bytes(json.dumps(doc).encode(), "root.json")


def test_next_root_must_chain() -> None:
    ring = make_ring()
    trust = ring.trust
    new_root_signer = CryptoSigner.generate_ed25519()
    md = Metadata[Root].from_bytes(ring.root_json)
    md.signed.version = 2
    md.signed.revoke_key(ring.root_signer.public_key.keyid, "root")
    md.signed.add_key(new_root_signer.public_key, "root")

    md.sign(new_root_signer)  # only the new key: devices on v1 must refuse it
    with pytest.raises(UnknownKeyError):
        trust.next_root(md.to_bytes(), "2.root.json")

    md.sign(ring.root_signer, append=True)
    assert trust.next_root(md.to_bytes(), "2.root.json").version == 2

    md.signed.version = 3
    md.sign(new_root_signer)
    md.sign(ring.root_signer, append=True)
    with pytest.raises(TrustError, match="expected 2"):
        trust.next_root(md.to_bytes(), "3.root.json")


def test_sign_files_needs_a_signer() -> None:
    with pytest.raises(ValueError):
        sign_files(FILES, [], expires=LATER)


def test_threshold_met_despite_one_bad_trusted_signature() -> None:
    # TUF semantics: enough good signatures win; a stray bad one does not veto.
    ring = make_ring(online=3, threshold=2)
    doc = json.loads(sign_files(FILES, ring.online, expires=LATER))
    bad = doc["signatures"][0]["sig"]
    doc["signatures"][0]["sig"] = ("0" if bad[0] != "0" else "1") + bad[1:]
    verify_files(ring.trust, json.dumps(doc).encode(), FILES)
