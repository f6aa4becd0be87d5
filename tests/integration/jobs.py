"""A factory for jobs as the API would have stored them, for tests that start further on."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from offload.aws import items
from offload.aws.store import JobStore
from offload.core.model import Job, JobStatus, Lane, utcnow
from offload.runtime import claiming


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
    claiming.claim(store, job_id, 1, owner, lease_s=60, max_attempts=3)
    then = items.timestamp(utcnow() - timedelta(hours=hours))
    doctor(
        store,
        job_id,
        "SET started_at = :then, updated_at = :then, lease_expires_at = :then",
        {":then": then},
    )
    return job_id


def hold_lease(store: JobStore, job_id: str, owner: str, until: datetime) -> None:
    """Give a STARTED job's lease to `owner` until `until` (a `waiting:` owner parks it)."""
    doctor(
        store,
        job_id,
        "SET lease_owner = :owner, lease_expires_at = :until",
        {":owner": {"S": owner}, ":until": items.timestamp(until)},
    )


def doctor(
    store: JobStore,
    job_id: str,
    update: str,
    values: dict[str, Any],
    condition: str = "attribute_exists(job_id)",
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Change a job's item behind the engine's back (age it, hand its lease to someone):
    the situations a test needs that no transition makes. The item as it is after."""
    request: dict[str, Any] = {
        "TableName": store.table,
        "Key": {"job_id": {"S": job_id}},
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ReturnValues": "ALL_NEW",
    }
    if names:
        request["ExpressionAttributeNames"] = names
    out = store.client.update_item(**request)
    return dict(out["Attributes"])
