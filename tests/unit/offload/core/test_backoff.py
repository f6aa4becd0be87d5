from __future__ import annotations

import random

import pytest

from offload.core.backoff import retry_delay


def test_delay_stays_under_the_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)]:
        delays = [retry_delay(attempt, 2.0, 60.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        # full jitter: the spread covers most of [0, ceiling], not one value
        assert max(delays) - min(delays) > ceiling * 0.8


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, 1.0, 10.0)
