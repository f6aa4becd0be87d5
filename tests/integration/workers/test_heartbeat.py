"""The heartbeat stops a task only when another worker runs its job (in process, under moto)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from offload.aws import transitions
from offload.aws.store import JobStore
from offload.core.holders import Worker
from offload.core.model import JobError, utcnow
from offload.runtime import claiming
from offload.settings import Settings
from tests.integration import jobs
from workers.heartbeat import Heartbeat, lease_owner


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing for the pool process that runs the task."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def running(store: JobStore, pid: int) -> tuple[str, Any]:
    """A job claimed by pool process `pid`, and the request the heartbeat sees for it."""
    job_id = jobs.pending(store)
    owner = lease_owner("host", pid)
    claiming.claim(store, job_id, 1, owner, lease_s=50, max_attempts=3)
    request = SimpleNamespace(
        id=job_id,
        hostname="host",
        worker_pid=pid,
        task=SimpleNamespace(),
        message=SimpleNamespace(delivery_info={}),
    )
    return job_id, request


def beating(settings: Settings, pid: int) -> tuple[JobStore, str, Heartbeat]:
    """A job claimed by pool process `pid`, and a heartbeat that has renewed its lease once."""
    store = JobStore(settings)
    job_id, request = running(store, pid)
    beat = Heartbeat(settings, pool=None, requests=lambda: [request])
    beat.beat()
    return store, job_id, beat


def test_a_retry_recorded_for_a_job_does_not_kill_its_process(
    settings: Settings, child: subprocess.Popen[bytes]
) -> None:
    # A batch recorded RETRY for one member and goes on with the others.
    store, job_id, beat = beating(settings, child.pid)  # the lease is held
    store.apply(
        transitions.retry(
            job_id, 1, JobError(type="E", message="m"), utcnow() + timedelta(seconds=5)
        )
    )
    beat.beat()
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=1)  # still running a second later


def test_a_job_taken_over_by_another_worker_stops_this_run(
    settings: Settings, child: subprocess.Popen[bytes]
) -> None:
    store, job_id, beat = beating(settings, child.pid)
    # The lease lapsed (an outage) and another worker took the job over.
    jobs.doctor(store, job_id, "SET lease_owner = :other", {":other": {"S": "other/1"}})
    beat.beat()
    assert child.wait(timeout=5) == -9


def test_a_job_its_task_parked_does_not_kill_its_process(
    settings: Settings, child: subprocess.Popen[bytes]
) -> None:
    # The task submitted a job and waits for it without its worker (offload.runtime.waiting): the
    # lease is no longer this process's, but nobody else runs the job.
    store, job_id, beat = beating(settings, child.pid)
    holder = Worker(lease_owner("host", child.pid))
    store.apply(transitions.park(job_id, 1, holder, "child-job", 300))
    beat.beat()
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=1)


def test_a_run_whose_job_was_taken_over_and_then_parked_is_still_stopped(
    settings: Settings, child: subprocess.Popen[bytes]
) -> None:
    # This worker stalled past its lease; another took the job over as attempt 2 and that
    # attempt parked at once. This run of attempt 1 must not go on beside it.
    store, job_id, beat = beating(settings, child.pid)
    jobs.doctor(
        store,
        job_id,
        "SET attempts = :two, lease_owner = :other",
        {":two": {"N": "2"}, ":other": {"S": "other/1"}},
    )
    store.apply(transitions.park(job_id, 2, Worker("other/1"), "child-job", 300))
    beat.beat()
    assert child.wait(timeout=5) == -9
