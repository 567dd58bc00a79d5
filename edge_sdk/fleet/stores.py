"""Artifact stores: where ``fleet publish --store`` puts a release's content-addressed chunks so
devices fetch them over HTTP(S) instead of through the broker.

Two kinds, one layout (``<prefix>/<sha256>``, the chunk's bytes, nothing else):

* ``s3://BUCKET/PREFIX``: any S3-compatible store (AWS S3, SeaweedFS, MinIO, Ceph...), through
  boto3 (the ``stores`` extra) with its usual settings: ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` or ``--store-endpoint``,
  ``AWS_REGION``.
* ``file:///PATH``: a directory that any HTTP(S) server (nginx, a CDN origin) serves.

Devices never see the store's own address or credentials: they fetch from the public base URLs
(``--store-url``) that the signed metadata lists as the release's mirrors. The upload is
idempotent and resumable: chunks already in the store with the right size are skipped.

Foreign errors (boto3's, the OS's) are mapped here, once, to :class:`StoreError` (exit 2, one
line naming the store and what to do).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.errors import InputError, OutputError

_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]\Z")
MAX_MIRRORS = 8  # agent.update.http_fetch.MAX_MIRRORS: devices refuse a longer list
MAX_MIRROR_URL = 512


class StoreError(OutputError):
    """The store cannot be reached, refuses our credentials, or has no such bucket."""


@dataclass(frozen=True)
class UploadResult:
    sent_chunks: int
    skipped_chunks: int  # already in the store with the right size
    sent_bytes: int


class Store(Protocol):
    @property
    def url(self) -> str: ...

    def upload(
        self, chunks: Mapping[str, bytes], progress: Callable[[int, int], None] | None = None
    ) -> UploadResult: ...

    def default_public_url(self) -> str | None: ...


def check_public_url(url: str, option: str = "--store-url") -> str:
    """A base URL devices fetch chunks from, as the signed metadata will name it (ends in '/').
    Mirrors the agent's own check (agent.update.http_fetch.check_mirror), so a publish never signs a
    list every device would refuse."""
    bad = InputError(
        f"{option} {url[:80]!r} must be an http:// or https:// base URL of at most "
        f"{MAX_MIRROR_URL} characters, without credentials, query or fragment"
    )
    if not 0 < len(url) <= MAX_MIRROR_URL or not url.isascii() or any(c in url for c in " \\"):
        raise bad
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise bad from e
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or port == 0
    ):
        raise bad
    return url if url.endswith("/") else url + "/"


def mirror_list(urls: list[str]) -> list[str]:
    mirrors = [check_public_url(u) for u in urls]
    if len(mirrors) > MAX_MIRRORS or len(set(mirrors)) != len(mirrors):
        raise InputError(f"give at most {MAX_MIRRORS} different --store-url values")
    return mirrors


def open_store(url: str, *, endpoint: str | None = None) -> Store:
    """The store ``url`` names: ``s3://BUCKET[/PREFIX]`` or ``file:///PATH``."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise InputError(
            f"--store {url[:80]!r} is not a URL; use s3://BUCKET/PREFIX or file:///PATH"
        ) from e
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return DirStore(url, Path(unquote(parts.path)))
    if parts.scheme == "s3" and _BUCKET.match(parts.netloc or ""):
        prefix = parts.path.strip("/")
        return S3Store(url, parts.netloc, f"{prefix}/" if prefix else "", endpoint)
    raise InputError(
        f"--store {url[:80]!r}: expected s3://BUCKET/PREFIX (an S3-compatible bucket) or "
        "file:///PATH (a directory an HTTP server serves)"
    )


def _check_chunks(chunks: Mapping[str, bytes]) -> None:
    for sha in chunks:
        if not _SHA256.match(sha):
            raise InputError(f"{sha[:80]!r} is not a chunk id (sha256 hex)")


@dataclass(frozen=True)
class DirStore:
    url: str
    directory: Path

    def default_public_url(self) -> str | None:
        return None  # a directory has no public address of its own: --store-url names it

    def upload(
        self, chunks: Mapping[str, bytes], progress: Callable[[int, int], None] | None = None
    ) -> UploadResult:
        _check_chunks(chunks)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"--store {self.url}: cannot create {self.directory}: {e.strerror}"
            ) from e
        sent = skipped = sent_bytes = 0
        for i, (sha, data) in enumerate(chunks.items(), start=1):
            path = self.directory / sha
            try:
                if path.is_file() and path.stat().st_size == len(data):
                    skipped += 1
                else:
                    write_bytes_atomic(path, data, 0o644)
                    sent += 1
                    sent_bytes += len(data)
            except OSError as e:
                raise StoreError(f"--store {self.url}: cannot write {path}: {e.strerror}") from e
            if progress is not None:
                progress(i, len(chunks))
        return UploadResult(sent, skipped, sent_bytes)


@dataclass(frozen=True)
class S3Store:
    url: str
    bucket: str
    prefix: str  # "" or ends with "/"
    endpoint: str | None

    def _endpoint(self) -> str | None:
        return (
            self.endpoint
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )

    def default_public_url(self) -> str | None:
        """Path-style ``ENDPOINT/BUCKET/PREFIX/``: right for a bucket readable anonymously at
        its own endpoint; a CDN in front of it is named with --store-url instead."""
        endpoint = self._endpoint()
        if endpoint is None:
            return None
        return f"{endpoint.rstrip('/')}/{self.bucket}/{self.prefix}"

    def _client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:
            raise StoreError(
                f"--store {self.url} needs boto3: pip install 'edgesdk-fleet[stores]'"
            ) from e
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60
        )
        try:
            # A session of its own: settings (AWS_*) are read now, not cached from an earlier call.
            session = boto3.session.Session()
            return session.client("s3", endpoint_url=self._endpoint(), config=config)
        except Exception as e:  # botocore's own errors: bad region or endpoint
            raise StoreError(f"--store {self.url}: {e}") from e

    def upload(
        self, chunks: Mapping[str, bytes], progress: Callable[[int, int], None] | None = None
    ) -> UploadResult:
        _check_chunks(chunks)
        client = self._client()
        with _s3_errors(self):
            present: dict[str, int] = {}
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    present[str(obj["Key"])] = int(obj["Size"])
            sent = skipped = sent_bytes = 0
            for i, (sha, data) in enumerate(chunks.items(), start=1):
                key = self.prefix + sha
                if present.get(key) == len(data):
                    skipped += 1
                else:
                    client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=data,
                        ContentType="application/octet-stream",
                        # Content-addressed: a chunk's bytes never change under its name.
                        CacheControl="public, max-age=31536000, immutable",
                    )
                    sent += 1
                    sent_bytes += len(data)
                if progress is not None:
                    progress(i, len(chunks))
        return UploadResult(sent, skipped, sent_bytes)


@contextmanager
def _s3_errors(store: S3Store) -> Iterator[None]:
    """boto3's exceptions as one StoreError line, by what the user should do."""
    from botocore import exceptions as bx

    where = f"--store {store.url}"
    try:
        yield
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as e:
        raise StoreError(
            f"{where}: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE)"
        ) from e
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as e:
        raise StoreError(
            f"{where}: cannot reach {store._endpoint() or 'the S3 endpoint'} ({e}); "
            "check --store-endpoint / AWS_ENDPOINT_URL and the network, then publish again"
        ) from e
    except bx.ClientError as e:
        error = e.response.get("Error", {})
        code = error.get("Code", "?")
        advice = {
            "NoSuchBucket": "create the bucket or fix its name",
            "AccessDenied": "give these credentials write access to the bucket",
            "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID",
            "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY",
        }.get(code, "check the store's settings and publish again")
        raise StoreError(f"{where}: {code}: {error.get('Message', '')}; {advice}") from e
    except (bx.BotoCoreError, OSError) as e:
        raise StoreError(f"{where}: {e}; check the store's settings and publish again") from e
