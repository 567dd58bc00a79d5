"""The MQTT topic layout shared by the agent and the fleet tools (docs/protocol.md).

Everything a device may write sits under its own ``devices/<id>/`` subtree and everything it
reads about itself under ``desired/devices/<id>/``, so a Mosquitto ACL ``pattern`` with
``%u`` (the certificate's common name) confines it; the repository and group assignments are
read-only for devices, and only the operator identity writes ``desired/`` and ``repo/``.

    <prefix>/<fleet>/repo/metadata/<file>            TUF metadata (retained)
    <prefix>/<fleet>/repo/chunks/<sha256>            content-addressed chunks (retained)
    <prefix>/<fleet>/desired/devices/<id>/<model>    signed assignment for one device (retained)
    <prefix>/<fleet>/desired/groups/<group>/<model>  signed assignment for a group (retained)
    <prefix>/<fleet>/devices/<id>/status             the device's status report (retained)
    <prefix>/<fleet>/devices/<id>/presence           online/offline, offline is the Will (retained)
    <prefix>/<fleet>/devices/<id>/events             update events as they happen
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_sdk.errors import InputError

# Letters, digits, dot, dash, underscore: never '+', '#', '/', or anything an ACL pattern or a
# topic filter would read as structure; 64 characters at most.
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


def check_identifier(value: str, what: str) -> str:
    """A device/fleet/group id that is safe inside MQTT topics; ``what`` opens the message."""
    if not IDENTIFIER.match(value):
        raise InputError(
            f"{what}: {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (no '+', '#' or '/': it is part of MQTT topics); rename it"
        )
    return value


@dataclass(frozen=True)
class Topics:
    prefix: str
    fleet: str

    def __post_init__(self) -> None:
        for part in self.prefix.split("/"):
            check_identifier(part, "topic prefix part")
        check_identifier(self.fleet, "fleet")

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.fleet}"

    @property
    def metadata(self) -> str:
        return f"{self.root}/repo/metadata"

    def metadata_file(self, name: str) -> str:
        return f"{self.metadata}/{name}"

    def chunk(self, sha256: str) -> str:
        if not _SHA256.match(sha256):
            raise InputError(f"chunk name {sha256!r} is not a sha256 hex digest")
        return f"{self.root}/repo/chunks/{sha256}"

    def desired_device(self, device: str, model: str) -> str:
        return f"{self.root}/desired/devices/{device}/{model}"

    def desired_group(self, group: str, model: str) -> str:
        return f"{self.root}/desired/groups/{group}/{model}"

    def desired_filters(self, device: str, group: str) -> tuple[str, str]:
        return (f"{self.root}/desired/devices/{device}/+", f"{self.root}/desired/groups/{group}/+")

    def device(self, device: str) -> str:
        return f"{self.root}/devices/{device}"

    def status(self, device: str) -> str:
        return f"{self.device(device)}/status"

    def presence(self, device: str) -> str:
        return f"{self.device(device)}/presence"

    def events(self, device: str) -> str:
        return f"{self.device(device)}/events"

    def desired_scope(self, topic: str) -> tuple[str, str] | None:
        """``("devices/<id>", model)`` or ``("groups/<g>", model)`` for a desired-state topic."""
        head = f"{self.root}/desired/"
        if not topic.startswith(head):
            return None
        parts = topic.removeprefix(head).split("/")
        if len(parts) != 3 or parts[0] not in ("devices", "groups"):
            return None
        return f"{parts[0]}/{parts[1]}", parts[2]
