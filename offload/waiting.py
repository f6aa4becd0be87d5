"""A job that waits for another job it submitted, without holding a worker meanwhile.

A cpu or gpu task may hand part of its work to a job of another task (rag.answer hands its
generation to `llm.generate` on the sagemaker lane) and give its worker back while that
job runs:

    child = ctx.submit_job("generate", "llm.generate", {"prompt": ...})
    if not child.status.terminal:
        ctx.wait_for(child)  # raises WaitingForJob: the attempt parks

A parked attempt stays STARTED (DESIGN.md's moves have no waiting state): its lease is held
by `waiting:<child id>` until a recheck time, and its message is sent again with that
delay. The child's final write wakes it: the lease falls due now and the message goes now.
The delivery that finds the lease due resumes the *same* attempt, and the task runs again
from its start (steps it keeps in S3 make that cheap) and finds the child ended. A lost
wake-up costs only time: the recheck message resumes it all the same.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from offload import items
from offload.catalog import CATALOG, Catalog
from offload.errors import JobStateConflict
from offload.job import Job, JobStatus, utcnow
from offload.queues import QueuePublisher
from offload.store import JobStore

if TYPE_CHECKING:
    from offload.context import JobContext

log = logging.getLogger(__name__)

# The lease owner of a parked attempt: this prefix and the id of the job it waits for.
WAITING = "waiting:"


def waits_for(job: Job) -> str | None:
    """The id of the job a parked job waits for; None when it is not parked."""
    owner = job.lease_owner or ""
    return owner.removeprefix(WAITING) if owner.startswith(WAITING) else None


def submit_job(ctx: JobContext, step: str, task: str, payload: Any, catalog: Catalog) -> Job:
    """Submit a job for step `step` of the running attempt, once: the same step of the same
    attempt finds the job it submitted before (an idempotency key of the parent's)."""
    # Imported here: offload.jobs imports the sagemaker lane, which imports this package's
    # context module.
    from offload.jobs import Jobs

    jobs = Jobs.outside_a_request(catalog, ctx.store, ctx.caller)
    key = f"offload:{ctx.job_id}:{step}:{ctx.attempt}"
    return asyncio.run(jobs.submit(task, payload, idempotency_key=key, parent_id=ctx.job_id))


def park(
    store: JobStore, job_id: str, attempt: int, owner: str, child_id: str, for_s: float
) -> Job:
    """Hand attempt `attempt` from `owner` to the wait for `child_id`, due again in `for_s`."""
    now = utcnow()
    item = store.write(
        job_id,
        f"park attempt {attempt} to wait for job {child_id}",
        # Not once its cancellation was asked: the worker that holds it revokes it instead.
        condition=(
            "#status = :started AND attempts = :attempt AND lease_owner = :owner"
            " AND attribute_not_exists(cancel_requested)"
        ),
        values={
            ":started": {"S": JobStatus.STARTED.value},
            ":attempt": {"N": str(attempt)},
            ":owner": {"S": owner},
            ":waiting": {"S": WAITING + child_id},
            ":until": items.timestamp(now + timedelta(seconds=for_s)),
            ":now": items.timestamp(now),
        },
        update="SET lease_owner = :waiting, lease_expires_at = :until, updated_at = :now",
    )
    assert item is not None
    return items.from_item(item)


def resume(store: JobStore, job: Job, owner: str, lease_s: float) -> Job:
    """Give a parked attempt whose wait is due back to a worker, as the same attempt."""
    now = utcnow()
    assert job.lease_owner is not None and job.lease_expires_at is not None
    item = store.write(
        job.job_id,
        f"resume attempt {job.attempts} for {owner}",
        # Not once its cancellation was asked: the canceller revokes it (offload/cancel.py).
        condition=(
            "#status = :started AND attempts = :attempt AND lease_owner = :waiting"
            " AND lease_expires_at = :seen AND attribute_not_exists(cancel_requested)"
        ),
        values={
            ":started": {"S": JobStatus.STARTED.value},
            ":attempt": {"N": str(job.attempts)},
            ":waiting": {"S": job.lease_owner},
            ":seen": items.timestamp(job.lease_expires_at),
            ":owner": {"S": owner},
            ":until": items.timestamp(now + timedelta(seconds=lease_s)),
            ":now": items.timestamp(now),
        },
        update="SET lease_owner = :owner, lease_expires_at = :until, updated_at = :now",
    )
    assert item is not None
    return items.from_item(item)


def wake_parent(store: JobStore, child: Job, catalog: Catalog = CATALOG) -> bool:
    """Wake the job waiting for `child`, which has ended: its wait falls due now and its
    message goes now. Whether one was woken; never raises (the recheck is the fallback)."""
    if child.parent_id is None:
        return False
    try:
        parent = wake(store, child.parent_id, child.job_id)
    except JobStateConflict:
        return False  # it no longer waits for this job (resumed by its recheck, cancelled)
    except Exception as exc:
        log.warning("job %s ended; its parent %s not woken: %s", child.job_id, child.parent_id, exc)
        return False
    try:
        spec = catalog.get(parent.task)
        QueuePublisher(store.settings).send(
            spec, parent.job_id, parent.payload, attempt=parent.attempts
        )
    except Exception as exc:
        # Whatever failed (an outage, a permission, a task renamed away), the child's own
        # end must not fail with it: the parent's recheck message resumes it anyway.
        log.warning("job %s: its waiting parent %s not sent: %s", child.job_id, parent.job_id, exc)
        return False
    log.info("job %s ended; woke job %s", child.job_id, parent.job_id)
    return True


def wake(store: JobStore, parent_id: str, child_id: str) -> Job:
    """Make the wait of `parent_id` for `child_id` due now; `JobStateConflict` if it does
    not wait for that job (any more)."""
    now = items.timestamp(utcnow())
    item = store.write(
        parent_id,
        f"wake from the wait for job {child_id}",
        condition="#status = :started AND lease_owner = :waiting",
        values={
            ":started": {"S": JobStatus.STARTED.value},
            ":waiting": {"S": WAITING + child_id},
            ":now": now,
        },
        update="SET lease_expires_at = :now, updated_at = :now",
    )
    assert item is not None
    return items.from_item(item)
