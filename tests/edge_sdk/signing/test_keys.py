"""Key files and keyrings on disk: init, load, rotate, and what devices can chain through."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tuf.api.metadata import Metadata, Root

from edge_sdk.core.trust.pinned_root import TrustRoot
from edge_sdk.core.trust.signatures import sign_files, verify_files
from edge_sdk.errors import (
    EdgeSdkError,
    InputError,
    KeyFileError,
    OutputError,
    ThresholdError,
    UnknownKeyError,
)
from edge_sdk.signing.key_files import PASSPHRASE_ENV, load_public_key, load_signer
from edge_sdk.signing.key_rotation import rotate_online_key, rotate_root_key
from edge_sdk.signing.keyring import describe_keyring, init_keys
from edge_sdk.signing.keys import load_trust_root

FILES = {"model.onnx": b"model bytes", "manifest.json": b"{}"}
LATER = datetime.now(UTC) + timedelta(days=7)


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


def one_line(err: pytest.ExceptionInfo[EdgeSdkError]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def sign_with(*key_files: Path) -> bytes:
    return sign_files(FILES, [load_signer(k) for k in key_files], expires=LATER)


def test_init_writes_a_keyring(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    info = init_keys(ring, online_keys=2, threshold=2, expires_days=30)
    names = sorted(p.name for p in ring.iterdir())
    assert names == [
        "1.root.json",
        "online-1.key",
        "online-1.pub",
        "online-2.key",
        "online-2.pub",
        "root.json",
        "root.key",
        "root.pub",
    ]
    for key in ("root.key", "online-1.key", "online-2.key"):
        assert stat.S_IMODE(os.stat(ring / key).st_mode) == 0o600
        assert (ring / key).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert info.root_version == 1 and info.threshold == 2
    assert len(info.online_keyids) == 2 and len(info.root_keyids) == 1
    assert info.expires - datetime.now(UTC) > timedelta(days=29)

    root = Metadata[Root].from_bytes((ring / "root.json").read_bytes()).signed
    assert root.version == 1
    assert root.roles["root"].keyids == list(info.root_keyids)
    assert root.roles["root"].threshold == 1
    for role in ("targets", "snapshot", "timestamp"):
        assert root.roles[role].keyids == list(info.online_keyids)
        assert root.roles[role].threshold == 2
    assert load_signer(ring / "root.key").public_key.keyid == info.root_keyids[0]
    assert {load_signer(ring / f"online-{i}.key").public_key.keyid for i in (1, 2)} == set(
        info.online_keyids
    )

    payload = json.dumps(info.to_json())
    assert "PRIVATE" not in payload
    assert json.loads(payload)["root_version"] == 1


def test_signed_by_online_keys_verifies_against_root_json(tmp_path: Path) -> None:
    init_keys(tmp_path / "ring", online_keys=2, threshold=2)
    ring = tmp_path / "ring"
    trust = load_trust_root(ring / "root.json")
    verify_files(trust, sign_with(ring / "online-1.key", ring / "online-2.key"), FILES)
    with pytest.raises(ThresholdError, match="1 of 2"):
        verify_files(trust, sign_with(ring / "online-1.key"), FILES)


def test_python_tuf_consumer_accepts_keyring_output(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    init_keys(ring)
    root_md = Metadata[Root].from_bytes((ring / "root.json").read_bytes())
    targets_md = Metadata.from_bytes(sign_with(ring / "online-1.key"))
    root_md.verify_delegate("root", root_md)
    root_md.signed.verify_delegate("targets", targets_md.signed_bytes, targets_md.signatures)


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    init_keys(ring)
    before = {p.name: p.read_bytes() for p in ring.iterdir()}
    with pytest.raises(OutputError) as err:
        init_keys(ring)
    assert "already holds a keyring" in one_line(err)
    assert {p.name: p.read_bytes() for p in ring.iterdir()} == before


def test_init_into_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OutputError):
        init_keys(target)


@pytest.mark.parametrize(
    ("online", "threshold", "days"), [(2, 3, 365), (1, 0, 365), (0, 1, 365), (1, 1, 0)]
)
def test_init_validates_counts(tmp_path: Path, online: int, threshold: int, days: int) -> None:
    with pytest.raises(InputError) as err:
        init_keys(tmp_path / "ring", online_keys=online, threshold=threshold, expires_days=days)
    one_line(err)
    assert not (tmp_path / "ring").exists()


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem() -> bytes:
    return (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty"),
        (os.urandom(64) + b"\x00", "not a PEM key file"),
        (b"hello, I am a text file\n", "not a PEM key file"),
        (_public_pem(), "public key"),
        (_pem(rsa.generate_private_key(65537, 2048)), "not an Ed25519 key"),
        (_pem(ec.generate_private_key(ec.SECP256R1())), "not an Ed25519 key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a readable"),
    ],
    ids=["empty", "random", "text", "public", "rsa", "ec", "broken-pem"],
)
def test_not_a_key_is_key_file_error(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "signing.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as err:
        load_signer(path)
    message = one_line(err)
    assert str(path) in message and words in message


def test_missing_key_and_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"key file .*nope\.key does not exist"):
        load_signer(tmp_path / "nope.key")
    with pytest.raises(KeyFileError, match="is a directory"):
        load_signer(tmp_path)


def test_a_key_that_is_a_device_or_fifo_is_refused_unread(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.key")  # reading it would block forever
    with pytest.raises(KeyFileError, match="is a FIFO"):
        load_signer(tmp_path / "pipe.key")
    with pytest.raises(KeyFileError, match="is a device"):
        load_signer(Path("/dev/zero"))  # reading it would never end
    (tmp_path / "big.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + b"A" * (1 << 20))
    with pytest.raises(KeyFileError, match="more than the 64 KiB allowed"):
        load_signer(tmp_path / "big.key")


def test_passphrase_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = tmp_path / "ring"
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    info = init_keys(ring)
    pem = (ring / "online-1.key").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    signer = load_signer(ring / "online-1.key")
    assert signer.public_key.keyid == info.online_keyids[0]
    verify_files(load_trust_root(ring), sign_with(ring / "online-1.key"), FILES)
    # Rotation signs with the encrypted root key and writes encrypted keys.
    rotate_online_key(ring)
    assert (ring / "online-2.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED")

    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(KeyFileError, match="wrong EDGE_SDK_KEY_PASSPHRASE"):
        load_signer(ring / "online-1.key")
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(KeyFileError, match="is encrypted; set EDGE_SDK_KEY_PASSPHRASE"):
        load_signer(ring / "online-1.key")
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    with pytest.raises(InputError, match="empty"):
        init_keys(tmp_path / "other")


def test_rotate_with_revoke(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    init_keys(ring)
    old_bundle = sign_with(ring / "online-1.key")
    v1 = (ring / "root.json").read_bytes()

    info = rotate_online_key(ring, revoke=ring / "online-1.key")
    assert info.root_version == 2
    assert (ring / "online-2.key").exists()
    new_id = load_signer(ring / "online-2.key").public_key.keyid
    assert info.online_keyids == (new_id,)
    assert [p.name for p in info.history] == ["1.root.json", "2.root.json"]
    assert (ring / "1.root.json").read_bytes() == v1
    revoked = next(k for k in info.keys if k.path.name == "online-1.key")
    assert revoked.roles == ()

    trust = load_trust_root(ring)
    with pytest.raises(UnknownKeyError) as err:
        verify_files(trust, old_bundle, FILES)
    one_line(err)
    verify_files(trust, sign_with(ring / "online-2.key"), FILES)

    # A device that pinned v1 walks to v2, as a TUF client would.
    pinned = TrustRoot.from_bytes(v1, "1.root.json")
    assert pinned.next_root((ring / "2.root.json").read_bytes(), "2.root.json").version == 2
    old_md = Metadata[Root].from_bytes(v1)
    old_md.verify_delegate("root", Metadata[Root].from_bytes((ring / "root.json").read_bytes()))


def test_rotate_without_revoke_keeps_old_key_and_can_revoke_by_pub(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    init_keys(ring)
    info = rotate_online_key(ring)
    assert len(info.online_keyids) == 2
    verify_files(load_trust_root(ring), sign_with(ring / "online-1.key"), FILES)
    info = rotate_online_key(ring, revoke=ring / "online-1.pub")
    assert info.root_version == 3 and len(info.online_keyids) == 2
    assert load_public_key(ring / "online-1.pub").keyid not in info.online_keyids


def test_rotate_revoking_a_non_online_key_is_refused(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    init_keys(ring)
    with pytest.raises(KeyFileError, match="not a current online key"):
        rotate_online_key(ring, revoke=ring / "root.pub")
    assert load_trust_root(ring).version == 1


def test_rotate_needs_the_offline_root_key(tmp_path: Path) -> None:
    ring, offline = tmp_path / "ring", tmp_path / "usb"
    init_keys(ring)
    offline.mkdir()
    (ring / "root.key").rename(offline / "root.key")
    with pytest.raises(KeyFileError) as err:
        rotate_online_key(ring)
    assert "--root-key" in one_line(err)
    with pytest.raises(KeyFileError, match="not the root key"):
        rotate_online_key(ring, root_key=ring / "online-1.key")
    assert rotate_online_key(ring, root_key=offline / "root.key").root_version == 2
    shown = describe_keyring(ring)
    assert next(k for k in shown.keys if k.path.name == "root.key").present is False


def test_rotate_root_keeps_the_chain(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    init_keys(ring)
    old_root = load_signer(ring / "root.key")
    old_root_id = old_root.public_key.keyid
    v1 = Metadata[Root].from_bytes((ring / "root.json").read_bytes())

    info = rotate_root_key(ring)
    new_root_id = load_signer(ring / "root.key").public_key.keyid
    assert new_root_id != old_root_id
    assert info.root_keyids == (new_root_id,)
    assert info.root_version == 2
    assert not (ring / "root.key.new").exists()
    assert load_public_key(ring / "root.pub").keyid == new_root_id
    assert stat.S_IMODE(os.stat(ring / "root.key").st_mode) == 0o600

    v2 = Metadata[Root].from_bytes((ring / "root.json").read_bytes())
    v1.verify_delegate("root", v2)  # devices pinned to v1 accept v2...
    v2.verify_delegate("root", v2)  # ...and v2 meets its own threshold
    assert set(v2.signatures) == {old_root_id, new_root_id}

    # Online keys are untouched, so existing bundles still verify.
    verify_files(load_trust_root(ring), sign_with(ring / "online-1.key"), FILES)

    # The new root key is the one that signs the next rotation: 1 -> 2 -> 3.
    rotate_online_key(ring)
    trust = TrustRoot.from_bytes((ring / "1.root.json").read_bytes(), "1.root.json")
    for version in (2, 3):
        path = ring / f"{version}.root.json"
        trust = trust.next_root(path.read_bytes(), path.name)
    assert trust.version == 3

    # The retired root key can no longer move devices forward.
    forged = Metadata[Root].from_bytes((ring / "3.root.json").read_bytes())
    forged.signed.version = 4
    forged.sign(old_root)
    with pytest.raises(UnknownKeyError):
        trust.next_root(forged.to_bytes(), "4.root.json")


def test_show_root_json_alone(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    init_keys(ring, online_keys=3, threshold=2)
    info = describe_keyring(ring / "root.json")
    assert info.root_version == 1 and info.threshold == 2
    assert [r.name for r in info.roles] == ["root", "targets", "snapshot", "timestamp"]
    with pytest.raises(KeyFileError):
        describe_keyring(tmp_path / "missing")
