"""python-tuf's ngclient over MQTT: the fleet's TUF repository lives in retained messages.

``ngclient.Updater`` does every TUF check (root rotation walk, timestamp/snapshot/targets
versions and hashes, expiry, threshold signatures, length caps); this module only moves
bytes. A metadata URL is ``mqtt:<topic>``; a topic with no retained message answers as HTTP
404 does, which is what ends the client's walk over ``N.root.json``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig  # type: ignore[attr-defined]

from agent.mqtt_link import MqttLink
from edge_sdk.core.trust import TrustRoot
from edge_sdk.errors import (
    ExpiredError,
    NotDeliveredError,
    OversizeError,
    ReplayError,
    TamperedError,
    TransferError,
    TrustError,
)

SCHEME = "mqtt:"


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """python-tuf's errors mapped once, by what the caller does, most specific first.

    A length or hash violation is tampering and final, even though python-tuf raises the
    length one as a ``DownloadError``; metadata the broker holds but never delivers (over
    this device's maximum packet size, or missing) is ``NotDeliveredError``, retried a
    bounded number of times; any other download problem is a ``TransferError``, retried.
    """
    try:
        yield
    except tuf_errors.DownloadLengthMismatchError as e:
        raise OversizeError(
            f"fleet metadata is longer than its signed length or this device's cap: {e}; "
            "refused as tampering"
        ) from e
    except tuf_errors.LengthOrHashMismatchError as e:
        raise TamperedError(f"fleet metadata does not match its signed hash: {e}") from e
    except tuf_errors.DownloadHTTPError as e:
        raise NotDeliveredError(f"fleet metadata not delivered: {e}") from e
    except tuf_errors.DownloadError as e:
        raise TransferError(f"fetching fleet metadata failed: {e}") from e
    except tuf_errors.ExpiredMetadataError as e:
        raise ExpiredError(f"fleet metadata expired: {e}; the operator must re-sign it") from e
    except tuf_errors.BadVersionNumberError as e:
        raise ReplayError(f"fleet metadata rolled back: {e}") from e
    except tuf_errors.RepositoryError as e:
        raise TrustError(f"fleet metadata refused: {e}") from e
    except (ValueError, TypeError, KeyError, RuntimeError, RecursionError) as e:
        # Hostile bytes that python-tuf's parsers do not wrap in their own errors.
        raise TrustError(f"fleet metadata refused: {type(e).__name__}: {e}") from e


class MqttFetcher(FetcherInterface):
    def __init__(self, link: MqttLink, timeout: float) -> None:
        self._link = link
        self._timeout = timeout

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(SCHEME):
            raise tuf_errors.DownloadError(f"not an MQTT URL: {url}")
        topic = url.removeprefix(SCHEME)
        try:
            payload = self._link.read_retained(topic, self._timeout)
        except TransferError as e:
            raise tuf_errors.DownloadError(str(e)) from e
        if payload is None:
            raise tuf_errors.DownloadHTTPError(f"no retained message on {topic}", 404)
        return iter((payload,))


class TufSession:
    """One ``refresh`` of the fleet repository and the lookups after it (ngclient's Updater
    refreshes once per instance, so each reconcile makes a new session)."""

    def __init__(
        self,
        metadata_dir: Path,
        pinned_root: Path,
        link: MqttLink,
        metadata_topic: str,
        *,
        timeout: float,
        max_metadata_bytes: int,
    ) -> None:
        metadata_dir.mkdir(parents=True, exist_ok=True)
        # First start: trust the root pinned at enrolment. Later starts: the cached root,
        # which may be newer (rotations walked since) and must not be rolled back.
        cached = metadata_dir / "root.json"
        bootstrap = None if cached.exists() else pinned_root.read_bytes()
        config = UpdaterConfig(
            root_max_length=max_metadata_bytes,
            timestamp_max_length=min(max_metadata_bytes, 64 * 1024),
            snapshot_max_length=max_metadata_bytes,
            targets_max_length=max_metadata_bytes,
        )
        try:
            self._updater = Updater(
                metadata_dir=str(metadata_dir),
                metadata_base_url=f"{SCHEME}{metadata_topic}/",
                fetcher=MqttFetcher(link, timeout),
                config=config,
                bootstrap=bootstrap,
            )
        except tuf_errors.RepositoryError as e:
            raise TrustError(f"the trusted root in {metadata_dir} is invalid: {e}") from e
        self._metadata_dir = metadata_dir

    def refresh(self) -> None:
        """Walk root versions, then timestamp, snapshot and targets, mapping python-tuf's
        errors to ours (a transfer problem is retried later; a trust problem is reported)."""
        with _mapped():
            self._updater.refresh()

    def target(self, path: str) -> TargetFile | None:
        with _mapped():
            return self._updater.get_targetinfo(path)

    def trusted_root(self) -> TrustRoot:
        """The root this refresh ended on (after any rotation): what bundle signatures and
        assignments are checked against."""
        return TrustRoot.from_bytes((self._metadata_dir / "root.json").read_bytes(), "fleet root")
