"""``edge-sdk fleet enroll``: one device's client certificate, its ``agent.toml``, and a record.

The certificate's CN is the device id, which Mosquitto turns into the MQTT username the ACL
confines (``%u``); so an id is checked as strictly as a topic level, and ids the operator side
uses are refused. Every input is checked and every byte generated before the first write;
``agent.toml`` is written last among the device's files (an agent never finds a config whose
certificate is missing) and the broker-side record after it.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from edge_sdk.broker import pki
from edge_sdk.broker.settings import OPERATOR_CN
from edge_sdk.broker.setup import BrokerInfo, load_broker_info
from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.bundle import check_name
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.core.userfile import read_user_file
from edge_sdk.core.wire.topics import check_identifier
from edge_sdk.errors import InputError, OutputError
from edge_sdk.signing.keys import load_trust_root

DEFAULT_STATE_DIR = "/var/lib/edge-agent"
# Ids the operator side connects as: a device enrolled under one would get the operator's ACL
# (CN "operator") or take over its MQTT session (client ids "edge-sdk-...").
_RESERVED = (OPERATOR_CN,)
_RESERVED_PREFIX = "edge-sdk"


def check_device_id(device_id: str) -> str:
    """A device id that is safe as an MQTT topic level, a certificate CN and an ACL ``%u``."""
    check_identifier(device_id, "device id")
    lowered = device_id.lower()
    if lowered in _RESERVED or lowered.startswith(_RESERVED_PREFIX):
        raise InputError(
            f"device id {device_id!r} is reserved for the operator's own broker identity; "
            "choose another id"
        )
    return device_id


@dataclass(frozen=True)
class EnrollRequest:
    device_id: str
    profile: str
    models: tuple[str, ...]
    out: Path
    broker_dir: Path = Path("broker")
    trust_root: Path = Path("keys/root.json")
    group: str = "default"
    state_dir: str = DEFAULT_STATE_DIR
    force: bool = False
    # Appended to agent.toml as is (e.g. "[probation]\nseconds = 0.3"): tests and sites with
    # their own timings; the result must still be valid TOML.
    extra_toml: str = ""
    # Lines for the [broker] table (e.g. "reconnect_min_s = 0.2"): TOML forbids opening a
    # table twice, so they cannot go into extra_toml.
    broker_toml: str = ""


@dataclass(frozen=True)
class Enrolment:
    device_id: str
    fleet: str
    group: str
    profile: str
    models: tuple[str, ...]
    config: Path
    cert: Path
    key: Path
    ca: Path
    trust_root: Path
    record: Path
    url: str
    serial: str
    sha256: str
    not_after: str

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device_id,
            "fleet": self.fleet,
            "group": self.group,
            "profile": self.profile,
            "models": list(self.models),
            "config": str(self.config),
            "cert": str(self.cert),
            "key": str(self.key),
            "ca": str(self.ca),
            "trust_root": str(self.trust_root),
            "record": str(self.record),
            "url": self.url,
            "serial": self.serial,
            "sha256": self.sha256,
            "not_after": self.not_after,
        }


def agent_toml(
    request: EnrollRequest, broker: BrokerInfo, profile_ref: str, trust_root_name: str
) -> str:
    """The device's agent.toml; paths are relative to it, so the directory ships as a unit."""
    q = _toml_string
    lines = [
        f"# Written by `edge-sdk fleet enroll {request.device_id}`.",
        f"device_id = {q(request.device_id)}",
        f"fleet = {q(broker.fleet)}",
        f"group = {q(request.group)}",
        f"profile = {q(profile_ref)}",
        f"state_dir = {q(request.state_dir)}",
        f"trust_root = {q(trust_root_name)}",
        "",
        "[broker]",
        f"url = {q(broker.url)}",
        f"topic_prefix = {q(broker.topic_prefix)}",
        'ca = "ca.pem"',
        f"cert = {q(request.device_id + '.pem')}",
        f"key = {q(request.device_id + '.key')}",
    ]
    if request.broker_toml:
        lines += request.broker_toml.strip("\n").splitlines()
    for model in request.models:
        lines += ["", "[[models]]", f"name = {q(model)}"]
    text = "\n".join(lines) + "\n"
    if request.extra_toml:
        text += "\n" + request.extra_toml.rstrip("\n") + "\n"
    return text


def enroll(request: EnrollRequest) -> Enrolment:
    """Issue the device's certificate and write its directory and the broker-side record."""
    device = check_device_id(request.device_id)
    check_identifier(request.group, "--group")
    if not request.models:
        raise InputError("pass --model NAME at least once: the agent needs the models it runs")
    for model in request.models:
        check_name(model)
    if len(set(request.models)) != len(request.models):
        raise InputError(f"--model given twice: {', '.join(request.models)}; list each once")
    if not request.state_dir or any(ord(c) < 32 for c in request.state_dir):
        raise InputError(f"--state-dir {request.state_dir!r}: give a directory path")
    resolve_profile(request.profile)  # raises ProfileError (exit 2) with a "did you mean"
    profile_file = _profile_file(request.profile)
    load_trust_root(request.trust_root)
    trust_root = request.trust_root / "root.json" if request.trust_root.is_dir() else None
    trust_root = trust_root or request.trust_root
    broker = load_broker_info(request.broker_dir)
    record = broker.devices_dir / f"{device}.json"
    out = request.out
    config = out / "agent.toml"
    if not request.force:
        for existing in (record, config):
            if existing.exists():
                raise OutputError(
                    f"{existing} exists: {device} is already enrolled there; pass --force to "
                    "issue it a new certificate"
                )
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; choose a directory")
    profile_ref = profile_file.name if profile_file else request.profile
    text = agent_toml(request, broker, profile_ref, "root.json")
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"the extra agent.toml text is not valid TOML: {e}") from e

    issued = pki.issue_client(broker.ca, device)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    try:
        out.mkdir(parents=True, exist_ok=True)
        broker.devices_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror}; choose a writable --out") from e
    cert_path, key_path, ca_path = out / f"{device}.pem", out / f"{device}.key", out / "ca.pem"
    pki.write_issued(issued, cert_path, key_path)
    write_bytes_atomic(ca_path, broker.ca.cert_pem)
    _copy(trust_root, out / "root.json")
    if profile_file is not None:
        _copy(profile_file, out / profile_file.name)
    write_bytes_atomic(config, text.encode())
    enrolled = Enrolment(
        device_id=device,
        fleet=broker.fleet,
        group=request.group,
        profile=request.profile,
        models=request.models,
        config=config,
        cert=cert_path,
        key=key_path,
        ca=ca_path,
        trust_root=out / "root.json",
        record=record,
        url=broker.url,
        serial=f"{cert.serial_number:x}",
        sha256=fingerprint,
        not_after=cert.not_valid_after_utc.isoformat(),
    )
    entry = {
        "device": device,
        "fleet": broker.fleet,
        "group": request.group,
        "profile": request.profile,
        "models": list(request.models),
        "enrolled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "serial": enrolled.serial,
        "sha256": fingerprint,
        "not_after": enrolled.not_after,
        "config": str(config.absolute()),
    }
    write_bytes_atomic(record, (json.dumps(entry, indent=2, sort_keys=True) + "\n").encode())
    return enrolled


def _profile_file(profile: str) -> Path | None:
    """A profile given as a file travels with the config (the device has no such path)."""
    if profile.endswith(".toml") or os.sep in profile:
        return Path(profile)
    return None


def _copy(source: Path, target: Path) -> None:
    if source.absolute() == target.absolute():
        return
    # A trust root or a profile: small regular files (a FIFO or device is refused, not read).
    data = read_user_file(source, "file", 16 << 20, InputError)
    write_bytes_atomic(target, data)


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string for everything json.dumps emits with
    # ensure_ascii=False (escapes are \" \\ \n \uXXXX ...).
    return json.dumps(value, ensure_ascii=False)
