"""Retry delays: exponential backoff with full jitter (AWS Architecture Blog, 2015)."""

from __future__ import annotations

import random


def retry_delay(
    attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based).

    Uniform in [0, min(cap, base * 2^(attempt-1))].

    Full jitter spreads the retries of many jobs that failed together (a dependency outage)
    instead of sending them back in synchronized waves.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    return (rng or random).uniform(0, ceiling)
