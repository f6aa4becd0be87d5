"""A factory for jobs as the API would have stored them, for tests that start further on."""

from __future__ import annotations

import uuid
from typing import Any

from offload.job import Job, JobStatus, Lane, utcnow
from offload.store import JobStore


def new_job(
    task: str = "diag.sleep",
    *,
    lane: Lane = "cpu",
    payload: Any = None,
    max_attempts: int = 3,
    caller: str = "local",
) -> Job:
    """A PENDING job, not stored."""
    now = utcnow()
    return Job(
        job_id=str(uuid.uuid4()),
        task=task,
        lane=lane,
        status=JobStatus.PENDING,
        max_attempts=max_attempts,
        created_at=now,
        updated_at=now,
        caller=caller,
        payload={} if payload is None else payload,
    )


def pending(store: JobStore, task: str = "diag.sleep", **fields: Any) -> str:
    """Store a PENDING job and return its id."""
    job = new_job(task, **fields)
    store.create(job)
    return job.job_id
