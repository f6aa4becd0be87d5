"""CPU pinning for the load benchmark: the API under test gets a core of its own and
everything else (workers, the local AWS, the load client) shares the rest, as when the
workers run on hosts of their own. Linux only; elsewhere nothing is pinned."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def cpus() -> list[int]:
    """The CPUs this process may run on."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def split() -> tuple[set[int], set[int]] | None:
    """(the API's CPUs, everyone else's), or None when there are too few CPUs to split."""
    mine = cpus()
    if len(mine) < 2:
        return None
    return {mine[0]}, set(mine[1:])


def pin(pid: int, allowed: set[int]) -> None:
    """Pin every thread of process `pid` (threads keep the mask they started with)."""
    tasks = Path(f"/proc/{pid}/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.exists() else [pid]
    for tid in tids:
        # A thread may end while we walk them.
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, allowed)


def pin_self(allowed: set[int]) -> None:
    """Pin this process's threads; processes started after this inherit the mask."""
    pin(os.getpid(), allowed)
