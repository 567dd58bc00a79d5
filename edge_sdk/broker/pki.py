"""X.509 for the fleet's MQTT broker: one small CA, a server certificate, a client certificate per
device or operator.

Devices authenticate to the broker with mutual TLS. Mosquitto's ``use_identity_as_username``
takes the client certificate's common name as the MQTT username, so the CN *is* the identity
the broker's ACLs see (``%u`` in an ACL pattern). All keys are EC P-256 and all signatures
ECDSA/SHA-256: small enough for constrained devices and accepted by every TLS stack we meet.

This is not the update trust chain (that is TUF, ``edge_sdk.core.trust``): a broker certificate only
says who may talk to the broker, never which bundle a device may install.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.userfile import read_user_file
from edge_sdk.errors import InputError, KeyFileError

# Certificates start a little in the past: a device whose clock lags the host's by a few minutes
# would otherwise reject a certificate issued just now as "not yet valid".
_BACKDATE = timedelta(minutes=5)

# Letters, digits and hyphens in dot-separated labels; a leading "*." for a wildcard name.
_HOSTNAME = re.compile(
    r"(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM; the key is unencrypted PKCS#8."""

    cert_pem: bytes
    key_pem: bytes


def create_ca(common_name: str, *, days: int = 3650) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path_length=0)."""
    _check_days(days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    public = key.public_key()
    builder = (
        _base(name, name, public, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return _issued(builder.sign(key, hashes.SHA256()), key)


def issue_server(ca: Issued, hostnames: Sequence[str], *, days: int = 825) -> Issued:
    """A broker certificate for ``hostnames`` (names and IP literals); CN is the first one.

    TLS clients check the subject alternative names, not the CN, so every name or address a
    client dials must be listed.
    """
    if isinstance(hostnames, str) or not hostnames:
        raise InputError(
            "a server certificate needs a list of host names or IP addresses, e.g. ['localhost']"
        )
    sans = [_san(h) for h in hostnames]
    return _issue_leaf(ca, hostnames[0], days, ExtendedKeyUsageOID.SERVER_AUTH, sans)


def issue_client(ca: Issued, common_name: str, *, days: int = 825) -> Issued:
    """A client certificate whose CN is the MQTT identity (the broker's username for it)."""
    return _issue_leaf(ca, common_name, days, ExtendedKeyUsageOID.CLIENT_AUTH, [])


def create_crl(ca: Issued, revoked: Sequence[tuple[int, datetime]], *, days: int = 3650) -> bytes:
    """A PEM certificate revocation list of ``(serial, when)`` signed by the CA.

    Long-lived on purpose: a TLS server that checks a CRL refuses *every* client once the CRL's
    nextUpdate has passed, so a short-lived CRL nobody re-signs would lock out the whole fleet.
    """
    _check_days(days)
    ca_cert = _load_cert(ca.cert_pem, "CA certificate")
    ca_key = _load_key(ca.key_pem, "CA private key")
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _BACKDATE)
        .next_update(now + timedelta(days=days))
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(Encoding.PEM)


def revoked_serials(crl_pem: bytes) -> set[int]:
    """The serial numbers a PEM CRL revokes."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as e:
        raise KeyFileError("not a readable PEM certificate revocation list") from e
    return {entry.serial_number for entry in crl}


def common_name(cert_pem: bytes) -> str:
    """The subject CN of a PEM certificate."""
    cert = _load_cert(cert_pem, "certificate")
    attributes = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        raise InputError("the certificate has no common name; issue it with edge_sdk.broker.pki")
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode()


def load_issued(cert_path: Path, key_path: Path) -> Issued:
    """Read a certificate and its private key, checking that they belong together."""
    cert_pem = _read(cert_path, "certificate")
    key_pem = _read(key_path, "private key")
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise KeyFileError(f"{cert_path} is not a PEM certificate file")
    if b"PRIVATE KEY-----" not in key_pem:
        raise KeyFileError(f"{key_path} is not a PEM private key file")
    cert = _load_cert(cert_pem, str(cert_path))
    key = _load_key(key_pem, str(key_path))
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise KeyFileError(
            f"{key_path} is not the private key of {cert_path}; pass the pair issued together"
        )
    return Issued(cert_pem=cert_pem, key_pem=key_pem)


def write_issued(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """Write both files atomically; the key readable by its owner only."""
    # Key first: a crash in between leaves a new key beside an old certificate, which
    # load_issued reports as a mismatch, rather than a certificate without any key.
    write_bytes_atomic(key_path, issued.key_pem, mode=0o600)
    write_bytes_atomic(cert_path, issued.cert_pem, mode=0o644)


def _issue_leaf(
    ca: Issued,
    common_name: str,
    days: int,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
) -> Issued:
    _check_days(days)
    ca_cert = _load_cert(ca.cert_pem, "CA certificate")
    ca_key = _load_key(ca.key_pem, "CA private key")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    builder = (
        _base(_name(common_name), ca_cert.subject, public, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _issued(builder.sign(ca_key, hashes.SHA256()), key)


def _base(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
    )


def _name(common_name: str) -> x509.Name:
    # X.509 caps a CN at 64 characters; cryptography would raise a bare ValueError.
    if not common_name or len(common_name) > 64:
        raise InputError(
            f"common name {common_name!r} must be 1 to 64 characters; choose a shorter identity"
        )
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    # cryptography accepts any ASCII string as a DNSName; a typo such as "broker host" would only
    # surface later as a TLS hostname mismatch on every device.
    if not _HOSTNAME.fullmatch(host):
        raise InputError(
            f"{host!r} is neither a host name nor an IP address; use e.g. broker.example.com"
        )
    return x509.DNSName(host)


def _check_days(days: int) -> None:
    if days < 1:
        raise InputError(f"certificate lifetime must be at least 1 day, not {days}")


def _issued(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    return Issued(
        cert_pem=cert.public_bytes(Encoding.PEM),
        key_pem=key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
    )


def _read(path: Path, what: str) -> bytes:
    # PEM files are a few KiB: a FIFO, a device or a huge file is refused, not read.
    data = read_user_file(path, f"{what} file", 1 << 20, KeyFileError)
    if not data.strip():
        raise KeyFileError(f"{path} is empty, not a {what} file")
    return data


def _load_cert(pem: bytes, where: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise KeyFileError(f"{where}: not a readable PEM certificate") from e


def _load_key(pem: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except TypeError as e:
        # TypeError is how cryptography says "encrypted, and no password given".
        raise KeyFileError(f"{where}: encrypted; broker keys must be unencrypted PKCS#8") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{where}: not a readable PEM private key") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{where}: not an EC key; issue broker keys with edge_sdk.broker.pki")
    return key


def _spki(public: CertificatePublicKeyTypes) -> bytes:
    return public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
