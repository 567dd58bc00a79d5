"""The broker goes away in the middle of a download: the agent keeps serving, reconnects with
backoff, and resumes without fetching the chunks it already verified."""

from __future__ import annotations

from pathlib import Path

from agent.daemon import Agent
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    padded_model,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker


def cached(agent: Agent) -> list[Path]:
    return [p for p in agent.cache.directory.iterdir() if not p.name.startswith(".")]


def test_broker_restart_mid_download_resumes_without_refetching(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    operator.publish(make_bundle(keyring, 2, artifact=padded_model(2 << 20, seed=11)))
    # Slow the download down so the outage lands in the middle of it: 34 new chunks, read 16
    # at a time, stored one per 0.1 s.
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config, failpoints="chunk_delay_s=0.1") as agent:
        operator.assign(1)
        wait_for(committed(config, 1))
        operator.assign(2)
        wait_for(lambda: len(cached(agent)) >= 5, what="5 chunks")
        broker.stop()  # persistence keeps the retained repository across the restart
        # Reads already answered are stored; the next batch finds no broker and the update
        # pauses with what it has verified so far.
        wait_for(lambda: agent.pauses > 0, what="the download to pause")
        held = len(cached(agent))
        assert agent.updaters["digits"].slot.version == 1  # still serving through the outage
        broker.start()
        wait_for(committed(config, 2), timeout=60, what="v2 committed after the outage")
        transfer = agent.updaters["digits"].last_transfer
    assert transfer is not None
    # The resumed download took the chunks verified before the outage from the cache.
    assert transfer.cached >= held >= 5, transfer
    assert transfer.fetched + transfer.cached + transfer.reused == transfer.chunks
    assert agent.link.connections >= 2
