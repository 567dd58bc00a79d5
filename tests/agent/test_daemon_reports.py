"""Report by exception against a real Mosquitto and a real ``edge-agent`` process: an idle agent
that samples its status every half second leaves the retained copy alone until it says
something new (here, an inference served) or is older than ``report.max_interval_s``, and a
new connection gets a fresh copy at once.

A process and not a thread: ``cpu_percent`` is the whole process's, and this test's own work
must not move it."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.client import InferenceClient
from edge_sdk.core.wire.topics import Topics
from testing.agents import (
    SAMPLES,
    Operator,
    agent_thread,
    committed,
    make_bundle,
    start_process,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker, free_port, terminate

SAMPLE_S = 0.5  # report.interval_s: how often the agent samples and decides
MAX_AGE_S = 3.0  # report.max_interval_s
STATUS = Topics("edge", "default").status("dev-1")


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() on arrival
    doc: dict[str, Any]
    live: bool  # published while we listened (not the retained copy a subscription gets)


class StatusWatch:
    """Every status message the broker sends a subscriber, as it arrives."""

    def __init__(self, broker: Broker) -> None:
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._client = broker.client()
        self._client.on_message = self._on_message
        self._client.subscribe(STATUS, qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            self._seen.append(Seen(time.monotonic(), json.loads(msg.payload), not msg.retain))

    def live(self, since: float = 0.0) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if s.live and s.at >= since]

    def latest(self) -> dict[str, Any] | None:
        with self._lock:
            return self._seen[-1].doc if self._seen else None

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@contextmanager
def idle_agent(
    tmp_path: Path, broker: Broker, keyring: Path, max_age_s: float
) -> Iterator[tuple[StatusWatch, str, Path]]:
    """An ``edge-agent`` process that committed v1 of digits and serves it on a loopback port,
    its status watched; its update's reports are over when this yields."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    listen = f"127.0.0.1:{free_port()}"
    path = write_config(tmp_path / "dev", broker, keyring / "root.json", serving={"listen": listen})
    report = f"[report]\ninterval_s = {SAMPLE_S}\nmax_interval_s = {max_age_s}\n"
    path.write_text(path.read_text().replace("[report]\ninterval_s = 1.0\n", report))
    watch = StatusWatch(broker)
    process = start_process(path, tmp_path / "agent.log")
    try:
        operator.assign(1)
        wait_for(committed(path, 1), what="v1 committed")

        def reported_committed() -> bool:
            doc = watch.latest()
            return (
                doc is not None
                and (doc["models"]["digits"]["last_result"] or {}).get("result") == "committed"
            )

        wait_for(reported_committed, what="the committed report")
        # The first samples after the update may still be news (its CPU burst, then the drop
        # back; the memory of a model just loaded): start once it has been quiet for a while.
        wait_for(
            lambda: not watch.live(time.monotonic() - 4 * SAMPLE_S),
            timeout=30,
            what="the agent settled after its update",
        )
        yield watch, f"http://{listen}", path
    finally:
        watch.close()
        terminate(process, None)  # SIGTERM, as systemd stops it


def test_an_idle_agent_republishes_its_status_only_with_news_or_at_the_maximum_age(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with idle_agent(tmp_path, broker, keyring, MAX_AGE_S) as (watch, url, _):
        # Idle for over two maximum ages: a sample every 0.5 s, and only the max-age copies.
        start = time.monotonic()
        time.sleep(2 * MAX_AGE_S + 1.5)
        idle = watch.live(start)
        # Then a request served: the figures changed, published at the next sample.
        with InferenceClient(url) as client:
            client.predict("digits", {"input": SAMPLES[:1]})
        served = time.monotonic()
        wait_for(
            lambda: any(
                s.doc["models"]["digits"]["inference"]["count"] for s in watch.live(served)
            ),
            timeout=10,
            what="the inference figures reported",
        )
        news = watch.live(served)[0]

    # One copy per sample before report by exception: a dozen or more of the same document.
    assert 2 <= len(idle) <= 3, [round(s.at - start, 2) for s in idle]
    gaps = [b.at - a.at for a, b in itertools.pairwise(idle)]
    # Each copy after the maximum age, and within a sample (and a loaded host's slack) of it.
    assert all(MAX_AGE_S - 0.3 <= g <= MAX_AGE_S + SAMPLE_S + 1.0 for g in gaps), gaps
    first, *rest = (s.doc for s in idle)
    for doc in rest:  # the same report, only older
        assert doc["models"] == first["models"] and doc["uptime_s"] > first["uptime_s"]
    # The request's figures went out at the next sample, not at the next maximum age.
    assert news.at - served <= SAMPLE_S + 1.5, news.at - served
    assert news.doc["models"]["digits"]["inference"]["count"] == 1


def test_a_new_connection_gets_the_status_at_once(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    # A maximum age far beyond the test: only the reconnection can explain a new copy.
    with idle_agent(tmp_path, broker, keyring, 600.0) as (watch, _, _):
        time.sleep(2 * SAMPLE_S)
        before = watch.latest()
        assert before is not None
        broker.restart()
        after = StatusWatch(broker)  # the first watcher's connection went with the broker
        try:
            wait_for(
                lambda: (after.latest() or {}).get("uptime_s", 0) > before["uptime_s"],
                timeout=15,
                what="a fresh status after the broker's restart",
            )
        finally:
            after.close()


class CountingMeter:
    """Stands in for the CPU meter: a new figure at every reading."""

    def __init__(self) -> None:
        self.readings = 0

    def percent(self) -> float:
        self.readings += 1
        return 40.0 + self.readings


def test_an_events_report_repeats_the_last_samples_cpu_figure(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """An update's reports come in a burst; read over its own fraction of a second, the CPU
    figure would show the burst and need a correction at the next sample. The interval here
    (60 s) has no sample in the test: every report is an event's."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    path = write_config(tmp_path / "dev", broker, keyring / "root.json")
    path.write_text(path.read_text().replace("[report]\ninterval_s = 1.0\n", "[report]\n"))
    meter = CountingMeter()
    watch = StatusWatch(broker)
    try:
        with agent_thread(path) as agent:
            wait_for(lambda: agent._status_due > 0, what="the first status")
            agent._cpu = meter  # type: ignore[assignment]
            operator.assign(1)
            wait_for(committed(path, 1), what="v1 committed")
            wait_for(lambda: len(watch.live()) >= 3, what="the update's reports")
            reports = watch.live()
    finally:
        watch.close()
    assert meter.readings == 0
    assert len({s.doc["cpu_percent"] for s in reports}) == 1, [s.doc for s in reports]


def test_the_deadbands_are_the_configured_ones(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """``report.cpu_deadband = 0.5``: a CPU figure one point up at every sample is news every
    time (under the default 10 points, it would be once in ten samples)."""
    path = write_config(tmp_path / "dev", broker, keyring / "root.json")
    report = "[report]\ninterval_s = 0.2\nmax_interval_s = 600\ncpu_deadband = 0.5\n"
    path.write_text(path.read_text().replace("[report]\ninterval_s = 1.0\n", report))
    watch = StatusWatch(broker)
    try:
        with agent_thread(path) as agent:
            wait_for(lambda: agent._status_due > 0, what="the first status")
            agent._cpu = CountingMeter()  # type: ignore[assignment]
            start = time.monotonic()
            time.sleep(2.5)
            copies = watch.live(start)
    finally:
        watch.close()
    figures = [s.doc["cpu_percent"] for s in copies]
    assert len(copies) >= 5 and figures == sorted(set(figures)), figures
