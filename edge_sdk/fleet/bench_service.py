"""``fleet bench`` and ``build --measure-on`` as one call: a benchmark job for one device of the
fleet, signed by the fleet's online keys, with its candidates' chunks kept on the broker where
a published release still needs them. The job itself (checks, signing, waiting for the answer)
is ``edge_sdk.fleet.bench``'s; the CLI builds the spec and prints the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.core.wire.bench_job import BenchAnswer
from edge_sdk.core.wire.topics import Topics
from edge_sdk.fleet.bench import JobSpec, job_serial, published_chunks, run_job
from edge_sdk.fleet.session import BrokerAddress


@dataclass(frozen=True)
class DeviceBench:
    """Where benchmark jobs go and who signs them (``edge_sdk.fleet.bench.load_signers``),
    loaded once (before minutes of building, for ``build --measure-on``); each ``measure``
    sends one job."""

    address: BrokerAddress
    topics: Topics
    signers: list[Any]
    repo: Path
    deadline_s: float | None = None  # None: the job's own budget

    def measure(
        self, spec: JobSpec, *, client_id: str, progress: Callable[[str], None]
    ) -> BenchAnswer:
        """The device's answer to one job (``edge_sdk.fleet.bench.DeviceBenchError`` if none)."""
        return run_job(
            self.address,
            self.topics,
            self.signers,
            spec,
            serial=job_serial(),
            deadline_s=self.deadline_s,
            keep_chunks=published_chunks(self.repo, self.address, self.topics),
            progress=progress,
            client_id=client_id,
        )
