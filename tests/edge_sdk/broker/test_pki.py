"""edge_sdk.broker.pki: the broker's CA, server and client certificates."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_sdk.broker import pki
from edge_sdk.errors import InputError, KeyFileError


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.create_ca("fleet CA")


def _cert(issued: pki.Issued) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.cert_pem)


def test_ca_is_a_self_signed_p256_ca(ca: pki.Issued) -> None:
    cert = _cert(ca)
    cert.verify_directly_issued_by(cert)
    assert pki.common_name(ca.cert_pem) == "fleet CA"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    key = load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert ca.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_server_certificate(ca: pki.Issued) -> None:
    server = pki.issue_server(ca, ["broker.example", "localhost", "127.0.0.1", "::1"])
    cert = _cert(server)
    cert.verify_directly_issued_by(_cert(ca))
    assert pki.common_name(server.cert_pem) == "broker.example"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = _cert(ca).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_client_certificate_carries_the_identity(ca: pki.Issued) -> None:
    client = pki.issue_client(ca, "device-42")
    cert = _cert(client)
    cert.verify_directly_issued_by(_cert(ca))
    assert pki.common_name(client.cert_pem) == "device-42"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_lifetime(ca: pki.Issued) -> None:
    cert = _cert(pki.issue_client(ca, "d", days=30))
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 <= lifetime.days <= 31


def test_certificate_from_another_ca_does_not_verify(ca: pki.Issued) -> None:
    other = pki.create_ca("other CA")
    with pytest.raises(ValueError):  # cryptography's signature check, not ours
        _cert(pki.issue_client(other, "d")).verify_directly_issued_by(_cert(ca))


@pytest.mark.parametrize(
    "hostnames",
    [[], "localhost", ["bad host!"], ["-leading-hyphen"]],
    ids=["empty", "bare-string", "space", "hyphen"],
)
def test_bad_server_names_are_input_errors(ca: pki.Issued, hostnames: list[str]) -> None:
    with pytest.raises(InputError):
        pki.issue_server(ca, hostnames)


def test_bad_common_name_and_lifetime_are_input_errors(ca: pki.Issued) -> None:
    with pytest.raises(InputError, match="1 to 64 characters"):
        pki.issue_client(ca, "x" * 65)
    with pytest.raises(InputError, match="at least 1 day"):
        pki.create_ca("ca", days=0)


def test_write_and_load_round_trip(ca: pki.Issued, tmp_path: Path) -> None:
    issued = pki.issue_client(ca, "device-1")
    cert_path, key_path = tmp_path / "device-1.pem", tmp_path / "device-1.key"

    pki.write_issued(issued, cert_path, key_path)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert pki.load_issued(cert_path, key_path) == issued


def test_load_missing_file(ca: pki.Issued, tmp_path: Path) -> None:
    pki.write_issued(ca, tmp_path / "ca.pem", tmp_path / "ca.key")
    with pytest.raises(KeyFileError, match=r"private key file .*missing\.key does not exist"):
        pki.load_issued(tmp_path / "ca.pem", tmp_path / "missing.key")
    with pytest.raises(KeyFileError, match=r"certificate file .*missing\.pem does not exist"):
        pki.load_issued(tmp_path / "missing.pem", tmp_path / "ca.key")
    with pytest.raises(KeyFileError, match="is a directory"):
        pki.load_issued(tmp_path, tmp_path / "ca.key")
    with pytest.raises(KeyFileError, match="is a device"):
        pki.load_issued(tmp_path / "ca.pem", Path("/dev/zero"))  # would never end


@pytest.mark.parametrize(
    ("cert_text", "key_text", "message"),
    [
        (b"", None, "is empty"),
        (b"hello\n", None, "not a PEM certificate"),
        (None, b"hello\n", "not a PEM private key"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            None,
            "not a readable PEM certificate",
        ),
        (
            None,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a readable PEM private key",
        ),
    ],
)
def test_load_bad_files(
    ca: pki.Issued,
    tmp_path: Path,
    cert_text: bytes | None,
    key_text: bytes | None,
    message: str,
) -> None:
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    pki.write_issued(ca, cert_path, key_path)
    if cert_text is not None:
        cert_path.write_bytes(cert_text)
    if key_text is not None:
        key_path.write_bytes(key_text)

    with pytest.raises(KeyFileError, match=message) as raised:
        pki.load_issued(cert_path, key_path)
    assert "\n" not in str(raised.value)


def test_load_rejects_a_key_that_is_not_the_certificates(ca: pki.Issued, tmp_path: Path) -> None:
    one, two = pki.issue_client(ca, "one"), pki.issue_client(ca, "two")
    pki.write_issued(pki.Issued(cert_pem=one.cert_pem, key_pem=two.key_pem), *_paths(tmp_path))

    with pytest.raises(KeyFileError, match="is not the private key of"):
        pki.load_issued(*_paths(tmp_path))


def test_load_rejects_a_non_ec_key(ca: pki.Issued, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    ed = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    pki.write_issued(pki.Issued(cert_pem=ca.cert_pem, key_pem=ed), *_paths(tmp_path))

    with pytest.raises(KeyFileError, match="not an EC key"):
        pki.load_issued(*_paths(tmp_path))


def _paths(directory: Path) -> tuple[Path, Path]:
    return directory / "x.pem", directory / "x.key"
