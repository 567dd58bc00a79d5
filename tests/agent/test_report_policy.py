"""Report by exception (``agent.report_policy``): a sample that says something new is published,
one that differs only in volatile figures within their deadbands is not, and nothing stays
unpublished past the maximum age."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.report_policy import (
    CHANGED,
    CPU,
    DEADBAND,
    DISK,
    FIRST,
    MAX_AGE,
    MEMORY,
    publish_reason,
    settled,
)
from edge_sdk.core.wire.protocol import Figures, ModelStatus, StatusDocument
from tests.edge_sdk.core.wire.test_protocol import documents

MAX_S = 900.0
BASE = StatusDocument(
    device="cam-01",
    group="lobby",
    profile="x86-64",
    uptime_s=120.0,
    cpu_percent=1.5,
    memory_rss_bytes=100_000_000,
    disk_free_bytes=10_000_000_000,
    models={"digits": ModelStatus(version=1, state="committed", inference=Figures(5, 0, 0.0))},
    at="2026-12-02T10:00:00Z",
)


def reason(sample: StatusDocument, age_s: float = 60.0) -> str:
    return publish_reason(BASE, sample, age_s=age_s, max_interval_s=MAX_S)


def test_the_first_sample_is_always_published() -> None:
    assert publish_reason(None, BASE, age_s=0.0, max_interval_s=MAX_S) == FIRST


def test_uptime_and_the_time_taken_never_count_as_news() -> None:
    assert reason(replace(BASE, uptime_s=10_000.0, at="2026-12-02T12:00:00Z")) == ""


def test_past_the_maximum_age_the_same_document_is_published_again() -> None:
    assert reason(BASE, age_s=MAX_S - 0.1) == ""
    assert reason(BASE, age_s=MAX_S) == MAX_AGE


@pytest.mark.parametrize(
    "change",
    [
        {"models": {"digits": ModelStatus(version=1, state="committed", inference=Figures(6))}},
        {"models": {"digits": ModelStatus(version=2, state="committed")}},
        {"models": {"digits": ModelStatus(version=1, state="downloading")}},
        {"models": {}},
        {"assignment_error": "assignment refused"},
        {"bench_job": "job-7"},
        {"group": "dock"},
        {"agent_version": "0.2.0"},
    ],
    ids=["inference", "version", "state", "model gone", "error", "bench job", "group", "agent"],
)
def test_any_change_outside_the_volatile_figures_is_published(change: dict[str, object]) -> None:
    assert reason(replace(BASE, **change)) == CHANGED  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "quiet", "news", "why"),
    [
        ("cpu_percent", 11.4, 11.5, CPU),  # 10 points from 1.5
        ("cpu_percent", 0.0, 11.5, CPU),
        ("memory_rss_bytes", 109_999_999, 110_000_000, MEMORY),  # 10 % of 100 MB
        ("memory_rss_bytes", 90_000_001, 90_000_000, MEMORY),
        ("disk_free_bytes", 9_000_000_001, 9_000_000_000, DISK),  # 10 % of 10 GB
        ("disk_free_bytes", 10_999_999_999, 11_000_000_000, DISK),
    ],
)
def test_a_resource_figure_is_news_once_past_its_deadband(
    field: str, quiet: float, news: float, why: str
) -> None:
    assert reason(replace(BASE, **{field: quiet})) == ""  # type: ignore[arg-type]
    assert reason(replace(BASE, **{field: news})) == why  # type: ignore[arg-type]


def test_from_zero_any_amount_is_news() -> None:
    empty = replace(BASE, disk_free_bytes=0)
    assert publish_reason(empty, empty, age_s=1.0, max_interval_s=MAX_S) == ""
    later = replace(empty, disk_free_bytes=1)
    assert publish_reason(empty, later, age_s=1.0, max_interval_s=MAX_S) == DISK


ages = st.floats(min_value=0.0, max_value=1e9)


VOLATILE = ("uptime_s", "cpu_percent", "memory_rss_bytes", "disk_free_bytes", "at")
LASTING = [f for f in StatusDocument.__dataclass_fields__ if f not in VOLATILE]


@given(documents, documents, st.sampled_from(LASTING), ages)
def test_a_document_whose_lasting_part_differs_is_never_suppressed(
    last: StatusDocument, other: StatusDocument, field: str, age_s: float
) -> None:
    # One lasting field from another document, the volatile figures unchanged: the smallest
    # news there is, and the case a deadband must never swallow.
    sample = replace(last, **{field: getattr(other, field)})
    if settled(last) != settled(sample):
        assert publish_reason(last, sample, age_s=age_s, max_interval_s=MAX_S) != ""
    whole = replace(other, at=last.at)  # and any document at all
    if settled(last) != settled(whole):
        assert publish_reason(last, whole, age_s=age_s, max_interval_s=MAX_S) != ""


@given(documents, documents, st.floats(min_value=1.0, max_value=1e6), st.floats(0.0, 1e6))
def test_past_the_maximum_age_anything_is_published(
    last: StatusDocument, sample: StatusDocument, max_s: float, over: float
) -> None:
    assert publish_reason(last, sample, age_s=max_s + over, max_interval_s=max_s) != ""


@given(
    documents,
    st.floats(0.0, 1e6),
    st.text(max_size=20),
    st.floats(-0.99, 0.99),
    st.floats(-0.099, 0.099),
    st.floats(-0.099, 0.099),
    st.floats(0.0, MAX_S, exclude_max=True),
)
def test_figures_within_their_deadbands_are_not_republished(
    last: StatusDocument,
    uptime_s: float,
    at: str,
    cpu: float,
    memory: float,
    disk: float,
    age_s: float,
) -> None:
    sample = replace(
        last,
        uptime_s=uptime_s,
        at=at,
        cpu_percent=last.cpu_percent + cpu * DEADBAND.cpu_points,
        # int() rounds toward zero: the step stays inside the deadband.
        memory_rss_bytes=last.memory_rss_bytes + int(last.memory_rss_bytes * memory),
        disk_free_bytes=last.disk_free_bytes + int(last.disk_free_bytes * disk),
    )
    # Far from zero, adding under 10 can round to 10 or more (a float's spacing there).
    assume(abs(sample.cpu_percent - last.cpu_percent) < DEADBAND.cpu_points)
    assert publish_reason(last, sample, age_s=age_s, max_interval_s=MAX_S) == ""
