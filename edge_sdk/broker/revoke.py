"""``edge-sdk fleet revoke DEVICE_ID``: a lost or stolen device's certificate stops opening the
broker.

The broker directory keeps the list of revoked certificates (``revoked.json``) and the CRL that
Mosquitto checks every client certificate against (``crl.pem``, named by ``crlfile`` in the
config ``broker init`` wrote). Mosquitto reads the CRL when it starts (a SIGHUP does not reload
it reliably), so a revocation takes effect at the broker's next restart; devices reconnect on
their own, with jittered backoff, and the revoked one is turned away at the TLS handshake.

Re-enrolling the id (``fleet enroll --force``) issues a new certificate with a new serial, which
the CRL does not name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_sdk.broker import pki
from edge_sdk.broker.enroll import check_device_id
from edge_sdk.broker.settings import CRL, REVOKED_JSON
from edge_sdk.broker.setup import load_broker_info
from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.errors import InputError


@dataclass(frozen=True)
class Revocation:
    device_id: str
    serial: str  # hex, as `fleet enroll` printed it
    revoked_at: str
    already: bool  # this certificate was revoked before; nothing changed
    crl: Path
    revoked_total: int

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device_id,
            "serial": self.serial,
            "revoked_at": self.revoked_at,
            "already_revoked": self.already,
            "crl": str(self.crl),
            "revoked_certificates": self.revoked_total,
        }


def revoke(broker_dir: Path, device_id: str) -> Revocation:
    """Add ``device_id``'s current certificate to the broker's CRL; idempotent."""
    device = check_device_id(device_id)
    broker = load_broker_info(broker_dir)
    record_path = broker.devices_dir / f"{device}.json"
    try:
        record = json.loads(record_path.read_text())
        serial = str(record["serial"])
        int(serial, 16)
    except FileNotFoundError as e:
        raise InputError(
            f"{device} is not enrolled in {broker_dir} (no {record_path}); check the id with "
            "`edge-sdk fleet status`"
        ) from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{record_path} is not an enrolment record ({e})") from e

    revoked_path = broker_dir / REVOKED_JSON
    entries = _read_revoked(revoked_path)
    for entry in entries:
        if entry["serial"] == serial:
            return Revocation(
                device, serial, entry["revoked_at"], True, broker_dir / CRL, len(entries)
            )
    now = datetime.now(UTC).replace(microsecond=0)
    entries.append({"device": device, "serial": serial, "revoked_at": now.isoformat()})
    crl = pki.create_crl(
        broker.ca,
        [(int(e["serial"], 16), datetime.fromisoformat(e["revoked_at"])) for e in entries],
    )
    # The list first: a crash in between leaves a revocation recorded and the CRL behind, which
    # the next `fleet revoke` of anyone rewrites; never a CRL that the list does not explain.
    write_bytes_atomic(revoked_path, (json.dumps(entries, indent=2) + "\n").encode(), mode=0o600)
    _replace_keeping_owner(broker_dir / CRL, crl)
    record["revoked_at"] = now.isoformat()
    write_bytes_atomic(record_path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return Revocation(device, serial, now.isoformat(), False, broker_dir / CRL, len(entries))


def _read_revoked(path: Path) -> list[dict[str, str]]:
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is not readable JSON ({e}); restore it from a backup") from e
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("serial"), str) for e in entries
    ):
        raise InputError(f"{path} is not a list of revocations; restore it from a backup")
    return entries


def _replace_keeping_owner(path: Path, data: bytes) -> None:
    # `broker init` gave crl.pem to the user Mosquitto runs as; a plain atomic write would hand
    # the new file to whoever runs this, and a broker started as root could no longer read it.
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise InputError(
            f"{path} does not exist: this broker directory predates revocation; rerun "
            "`edge-sdk broker init` with --force, or add crlfile to its config by hand"
        ) from e
    write_bytes_atomic(path, data, mode=0o644)
    if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
        os.chown(path, st.st_uid, st.st_gid)
