"""What the updater's tests build on: a stand-in for the daemon around one model's updater
(an ``agent.update.update_state.Environment`` without a broker) and versions installed straight
into a store, as a verified install leaves them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.config import ModelConfig, load_config
from agent.update.chunk_cache import ChunkCache
from agent.update.machine import Event, Journal
from agent.update.store import ModelStore
from edge_sdk.core.bundle import SIGNATURES, Bundle
from edge_sdk.core.trust import TrustRoot
from edge_sdk.errors import TransferError
from edge_sdk.signing.keys import load_trust_root
from testing.agents import make_bundle, write_config


def device_config(directory: Path, keys: Path) -> Path:
    """An agent.toml for one device whose broker is never reached."""
    broker = SimpleNamespace(url="mqtt://127.0.0.1:9", tls=False)
    return write_config(directory, broker, keys / "root.json")  # type: ignore[arg-type]


def install(store: ModelStore, version: int, files: dict[str, bytes]) -> None:
    staging = store.fresh_staging(version)
    for name, data in files.items():
        (staging / name).write_bytes(data)
    index = {n: [[hashlib.sha256(d).hexdigest(), len(d)]] for n, d in files.items()}
    store.install(version, index, verified=files)


def bundle_files(bundle: Bundle) -> dict[str, bytes]:
    """A bundle's files as installed: the signed ones and the signatures."""
    return {**bundle.signed_files(), SIGNATURES: bundle.signatures or b""}


class Device:
    """The daemon around one updater, as far as recovery needs it: no broker (a resumed
    download waits), the real trust root, no crash points."""

    def __init__(self, config: Path, trust: TrustRoot) -> None:
        self.config = load_config(config)
        self.cache = ChunkCache(self.config.state_dir / "chunks")
        self._trust = trust
        self.events: list[Event] = []

    def now(self) -> float:
        return 1000.0

    def tuf_session(self) -> Any:
        raise TransferError("no broker in this test")

    def fetch(self, *args: Any) -> Any:
        raise TransferError("no broker in this test")

    def local_chunks(self) -> dict[str, Any]:
        return {}

    def trusted_root(self) -> TrustRoot:
        return self._trust

    def event(self, model: str, journal: Journal, event: Event) -> None:
        self.events.append(event)

    def crash_point(self, name: str) -> None:
        pass


@dataclass
class Installed:
    """One device's model with versions installed and verified, ``current`` naming one."""

    device: Device
    model: ModelConfig
    store: ModelStore
    bundles: dict[int, Bundle]

    def damage(self, version: int) -> None:
        """Change a byte of the version's artifact on disk (its length stays)."""
        path = self.store.version_dir(version) / self.bundles[version].manifest.artifact
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))


def installed(directory: Path, keys: Path, versions: Iterable[int], current: int) -> Installed:
    device = Device(device_config(directory / "dev", keys), load_trust_root(keys / "root.json"))
    store = ModelStore(device.config.state_dir, "digits")
    bundles: dict[int, Bundle] = {}
    for version in versions:
        bundles[version] = make_bundle(keys, version)
        install(store, version, bundle_files(bundles[version]))
    store.set_current(current)
    return Installed(device, device.config.models[0], store, bundles)
