"""The process and device figures in a device's status: resident memory, CPU use and free disk,
read from /proc, getrusage and statvfs."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from agent.sysinfo import CpuMeter, free_disk_bytes, release_memory, rss_bytes


def test_resident_memory_follows_what_the_process_holds() -> None:
    before = rss_bytes()
    block = bytearray(64 << 20)  # touched: zero-filled pages count once written
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert rss_bytes() - before > 48 << 20
    del block
    release_memory()
    assert rss_bytes() < before + (32 << 20)  # now, not the peak


def test_cpu_percent_is_of_one_core_between_readings() -> None:
    start = time.monotonic()
    meter = CpuMeter()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    busy = meter.percent()
    wall = time.monotonic() - start  # longer than the meter's: a lower bound on its figure
    assert 0.95 * 100 * 0.2 / wall <= busy <= 100 * (os.cpu_count() or 1)
    time.sleep(0.2)
    assert meter.percent() < busy  # the next reading starts where this one ended


def test_free_disk_is_what_an_unprivileged_writer_may_use(tmp_path: Path) -> None:
    free = free_disk_bytes(tmp_path)
    assert 0 < free <= shutil.disk_usage(tmp_path).free
