"""Report by exception (docs/protocol.md §6): whether a fresh status sample says something the
retained one does not, the convention of MQTT telemetry (Sparkplug's "report by exception").

The agent samples its status every ``report.interval_s`` and republishes it only when it says
something new: a change anywhere but the volatile resource figures, a figure that moved past its
deadband, or a retained copy older than ``report.max_interval_s``. Liveness is not this
document's job (the retained presence and its Last Will are), so an unchanged status repeated
every minute only cost the broker about 1 KB in and 1 KB out to every watcher per device.

Pure: no clock, no I/O; the daemon owns both (``agent.daemon``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge_sdk.core.wire.protocol import StatusDocument


@dataclass(frozen=True)
class Deadband:
    """How far a resource figure must move from the value last published to count as news.
    Sized so an idle agent's jitter (a fraction of a CPU point, a few hundred KB of heap, the
    disk filling slowly) stays quiet, and a real shift (a busy core, a leak, a filling disk)
    is reported within one sampling interval."""

    cpu_points: float = 10.0  # cpu_percent, in percentage points of one core
    memory_fraction: float = 0.10  # memory_rss_bytes, of the value last published
    disk_fraction: float = 0.10  # disk_free_bytes, of the value last published


DEADBAND = Deadband()
# What a reason names, for the agent's debug log and the tests.
FIRST, MAX_AGE, CHANGED, CPU, MEMORY, DISK = (
    "first",
    "max age",
    "changed",
    "cpu",
    "memory",
    "disk",
)


def settled(doc: StatusDocument) -> StatusDocument:
    """``doc`` without the figures that move on their own (resources, uptime, the time it was
    taken): what must reach the fleet as soon as it differs."""
    return replace(doc, uptime_s=0.0, cpu_percent=0.0, memory_rss_bytes=0, disk_free_bytes=0, at="")


def _moved(old: int, new: int, fraction: float) -> bool:
    # Relative to the published value; from 0, any change is news.
    return new != old and abs(new - old) >= fraction * abs(old)


def publish_reason(
    last: StatusDocument | None,
    sample: StatusDocument,
    *,
    age_s: float,
    max_interval_s: float,
    deadband: Deadband = DEADBAND,
) -> str:
    """Why ``sample`` should be published over ``last`` (the document last published,
    ``age_s`` seconds ago), or ``""`` when it says nothing new. The deadbands compare with
    the published value, not the previous sample, so a slow drift is reported once it adds up."""
    if last is None:
        return FIRST
    if age_s >= max_interval_s:
        return MAX_AGE
    if settled(sample) != settled(last):
        return CHANGED
    if abs(sample.cpu_percent - last.cpu_percent) >= deadband.cpu_points:
        return CPU
    if _moved(last.memory_rss_bytes, sample.memory_rss_bytes, deadband.memory_fraction):
        return MEMORY
    if _moved(last.disk_free_bytes, sample.disk_free_bytes, deadband.disk_fraction):
        return DISK
    return ""
