"""What every benchmark keeps: its samples and the machine in `bench/results/<name>.json`,
and whether this is a quick smoke run (`OFFLOAD_BENCH_QUICK=1`)."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import RESULTS


def quick() -> bool:
    """A smoke run: every benchmark shrinks its counts to finish in seconds, not minutes."""
    return os.environ.get("OFFLOAD_BENCH_QUICK", "") not in ("", "0")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick(),
    }


def where(info: dict[str, Any]) -> str:
    """The machine in words, for a section's footnote."""
    smoke = " (quick smoke run: too few samples to trust)" if info.get("quick") else ""
    return (
        f"Python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs; "
        f"measured {info['date']}{smoke}"
    )


def save(name: str, result: dict[str, Any]) -> Path:
    """Write `result` to `bench/results/<name>.json`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def load(name: str) -> dict[str, Any] | None:
    """`bench/results/<name>.json`, or None when that benchmark has not run."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result
