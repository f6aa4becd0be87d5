"""A factory for jobs as the API would have stored them, for tests that start further on."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from offload import items, leases
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


def started_ago(
    store: JobStore, task: str, *, lane: Lane, hours: float, payload: Any, owner: str = "w/1"
) -> str:
    """A job `owner` STARTED `hours` ago, unchanged since, whose lease lapsed then too."""
    job_id = pending(store, task, lane=lane, payload=payload)
    leases.claim(store, job_id, 1, owner, lease_s=60, max_attempts=3)
    then = items.timestamp(utcnow() - timedelta(hours=hours))
    store.write(
        job_id,
        "age it",
        condition="#status = :started",
        values={":started": {"S": "STARTED"}, ":then": then},
        update="SET started_at = :then, updated_at = :then, lease_expires_at = :then",
    )
    return job_id


def hold_lease(store: JobStore, job_id: str, owner: str, until: datetime) -> None:
    """Give a STARTED job's lease to `owner` until `until` (a `waiting:` owner parks it)."""
    store.write(
        job_id,
        "hold its lease",
        condition="#status = :started",
        values={
            ":started": {"S": "STARTED"},
            ":owner": {"S": owner},
            ":until": items.timestamp(until),
        },
        update="SET lease_owner = :owner, lease_expires_at = :until",
    )
