"""Reconnect backoff: bounded, growing, saturating, jittered, and resettable."""

from __future__ import annotations

import random

import pytest

from agent.backoff import Backoff


class Extreme(random.Random):
    """A random source that always draws the lowest or the highest value of a range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_delays_stay_within_half_minimum_and_the_cap() -> None:
    backoff = Backoff(1.0, 30.0, rng=random.Random(1))
    for _ in range(200):
        cap = backoff.cap()
        delay = backoff.next_delay()
        assert 0.5 <= delay <= cap <= 30.0


def test_the_cap_doubles_then_saturates_at_maximum() -> None:
    backoff = Backoff(0.5, 5.0, rng=random.Random(2))
    caps = []
    for _ in range(7):
        caps.append(backoff.cap())
        backoff.next_delay()
    assert caps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_the_bounds_are_reached_at_the_extremes_of_the_draw() -> None:
    low = Backoff(2.0, 10.0, rng=Extreme(high=False))
    high = Backoff(2.0, 10.0, rng=Extreme(high=True))
    assert [low.next_delay() for _ in range(4)] == [1.0, 1.0, 1.0, 1.0]
    assert [high.next_delay() for _ in range(4)] == [2.0, 4.0, 8.0, 10.0]


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(3), attempts=10_000)
    assert backoff.cap() == 60.0
    assert 0.5 <= backoff.next_delay() <= 60.0


def test_reset_starts_again_from_the_minimum() -> None:
    backoff = Backoff(1.0, 16.0, rng=Extreme(high=True))
    for _ in range(6):
        backoff.next_delay()
    assert backoff.cap() == 16.0
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.cap() == 1.0
    assert backoff.next_delay() == 1.0
    assert backoff.next_delay() == 2.0


def test_jitter_varies_the_delays() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(4), attempts=10)  # saturated cap
    delays = [backoff.next_delay() for _ in range(50)]
    assert len(set(delays)) > 40
    assert min(delays) < 3.0 < 6.0 < max(delays)


def test_the_random_source_decides_the_jitter() -> None:
    def delays(seed: int) -> list[float]:
        backoff = Backoff(1.0, 8.0, rng=random.Random(seed))
        return [backoff.next_delay() for _ in range(10)]

    assert delays(5) == delays(5)
    assert delays(5) != delays(6)


def test_devices_with_different_seeds_do_not_reconnect_in_lockstep() -> None:
    fleet = [Backoff(1.0, 30.0, rng=random.Random(seed), attempts=6) for seed in range(20)]
    first = [b.next_delay() for b in fleet]
    assert len(set(first)) == len(first)


def test_equal_minimum_and_maximum_is_allowed() -> None:
    backoff = Backoff(3.0, 3.0, rng=random.Random(7))
    assert all(1.5 <= backoff.next_delay() <= 3.0 for _ in range(20))


@pytest.mark.parametrize(
    ("minimum", "maximum"),
    [(0.0, 10.0), (-1.0, 10.0), (5.0, 4.0), (0.0, 0.0), (-2.0, -1.0)],
)
def test_invalid_bounds_raise(minimum: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="minimum"):
        Backoff(minimum, maximum)
