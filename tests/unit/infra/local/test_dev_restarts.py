"""`LocalSystem.restart_dead_workers`: a dead worker is replaced and the reason said, within a
limit. Workers here are tiny stand-in processes, not Celery."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.dev import Child, LocalSystem, RestartLimit

CRASH = [sys.executable, "-c", "print('starting'); print('CRITICAL Unrecoverable error: boom')"]
CRASH[-1] += "; raise SystemExit(1)"
STAY = [sys.executable, "-c", "import time; print('ready.', flush=True); time.sleep(60)"]


@pytest.fixture
def worker_argv() -> list[list[str]]:
    """What the next worker runs (the first item): by default, it crashes."""
    return [CRASH]


@pytest.fixture(params=["log file", "terminal"])
def system(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    worker_argv: list[list[str]],
) -> Iterator[LocalSystem]:
    """A system with no AWS whose workers run `worker_argv`, printing to a log file each or
    to this terminal (relayed)."""
    local = LocalSystem(log_dir=tmp_path if request.param == "log file" else None)
    local.restart_limit = 2
    spawn = local._spawn
    monkeypatch.setattr(local, "_spawn", lambda name, _: spawn(name, worker_argv[0]))
    try:
        yield local
    finally:
        local.stop(grace_s=2)


def exited(child: Child) -> Child:
    child.process.wait(10)
    return child


def test_a_worker_that_exits_is_replaced_with_one_line_saying_why(system: LocalSystem) -> None:
    exited(system.start_worker("cpu"))
    lines = system.restart_dead_workers()
    assert lines == [
        "worker-cpu-1 exited with code 1 (last line: CRITICAL Unrecoverable error: boom); "
        "started worker-cpu-2 in its place"
    ]
    assert [(w.name, w.lane) for w in system.workers()] == [("worker-cpu-2", "cpu")]
    system.check_alive(workers=False)  # a dead worker is not a dead system


def test_a_killed_worker_is_named_by_its_signal(
    system: LocalSystem, worker_argv: list[list[str]]
) -> None:
    worker_argv[0] = STAY
    worker = system.start_worker("gpu")
    deadline = time.monotonic() + 10
    while "ready." not in worker.output():
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    assert system.restart_dead_workers() == []  # alive: left alone
    worker.process.send_signal(signal.SIGKILL)
    exited(worker)
    assert system.restart_dead_workers() == [
        "worker-gpu-1 was killed by SIGKILL (last line: ready.); started worker-gpu-2 in its place"
    ]


def test_a_lane_that_keeps_dying_stops_restarting(system: LocalSystem) -> None:
    exited(system.start_worker("cpu"))
    for _ in range(system.restart_limit):
        assert len(system.restart_dead_workers()) == 1
        exited(system.workers()[0])
    with pytest.raises(RestartLimit, match="the cpu lane restarted 2 times within 60 s"):
        system.restart_dead_workers()
    assert system.workers() == []
