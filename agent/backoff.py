"""Reconnect delays: exponential backoff with full jitter (pure; the random source is passed in).

Full jitter (a uniform delay between zero and the exponential cap) is what keeps a fleet that
lost its broker at the same moment from reconnecting in lockstep and knocking it over again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    minimum: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.maximum:
            raise ValueError(f"backoff needs 0 < minimum <= maximum, got {self}")

    def cap(self) -> float:
        """The upper bound of the next delay: minimum * 2**attempts, at most ``maximum``."""
        return min(self.maximum, self.minimum * 2.0 ** min(self.attempts, 32))

    def next_delay(self) -> float:
        cap = self.cap()
        self.attempts += 1
        return float(self.minimum / 2 + self.rng.uniform(0, cap - self.minimum / 2))

    def reset(self) -> None:
        self.attempts = 0
