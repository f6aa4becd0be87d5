"""Medians and spreads: every figure in BENCHMARKS.md is a median over rounds with its range."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`th percentile (0-100) of `values`, interpolated between the nearest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """A figure over repeated rounds: its median, p10-p90 and min-max."""

    median: float
    p10: float
    p90: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of `values` (at least one)."""
        return cls(
            median=percentile(values, 50),
            p10=percentile(values, 10),
            p90=percentile(values, 90),
            low=min(values),
            high=max(values),
            n=len(values),
        )

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        """JSON-ready, rounded."""
        return {key: round(value, digits) for key, value in asdict(self).items()}

    def shown(self, unit: str = "", digits: int = 1) -> str:
        """`median (min-max)` for a table cell."""
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}-{self.high:.{digits}f})"
