"""The benchmarks' PNG plots: matplotlib without a display, saved beside the results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import RESULTS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def figure(width: float = 8.0, height: float = 4.5) -> Figure:
    """A matplotlib figure that needs no display (the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def grouped_bars(
    ax: Axes, labels: Sequence[str], series: Mapping[str, Sequence[Mapping[str, Any]]]
) -> None:
    """One group of bars per label, one bar per series: each a spread's median, its
    whiskers the spread's min and max (`bench.stats.Spread.as_dict()`)."""
    width = 0.8 / len(series)
    for i, (name, spreads) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        errors = [
            [s["median"] - s["low"] for s in spreads],
            [s["high"] - s["median"] for s in spreads],
        ]
        ax.bar(xs, [s["median"] for s in spreads], width, yerr=errors, capsize=4, label=name)
    ax.set_xticks(range(len(labels)), labels)


def save(name: str, fig: Figure) -> Path:
    """Write `fig` to `bench/results/<name>.png`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    return path
