"""Process and device figures for status reports, read from /proc and statvfs (no psutil: the
device install stays light)."""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import time
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size now (not the peak)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        # macOS and friends: the peak is the best we have.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def release_memory() -> None:
    """Hand freed heap back to the system after an update: the download, hashing and loading
    of a model leave megabytes free inside glibc's arenas, and a daemon that idles for days
    should not keep them (malloc_trim exists on glibc only; elsewhere this is a no-op)."""
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_disk_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


class CpuMeter:
    """CPU use of this process between two readings, as a percentage of one core."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = cpu_seconds()

    def percent(self) -> float:
        wall, cpu = time.monotonic(), cpu_seconds()
        elapsed = wall - self._wall
        value = 100.0 * (cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
        self._wall, self._cpu = wall, cpu
        return round(value, 2)
