"""A job whose message no worker of its lane can run (an unknown task, an unreadable body)
ends FAILURE with the reason, instead of staying PENDING while its message sits in the DLQ.

Only the moves DESIGN.md allows are used: a PENDING or RETRY job starts an attempt and that
attempt fails at once; a STARTED job whose lease has lapsed fails. A job that has ended, or
that another worker runs under a live lease, is left as it is.
"""

from __future__ import annotations

import logging

from offload.aws import transitions
from offload.aws.store import JobStore
from offload.core.holders import runner
from offload.core.model import Job, JobError, JobStatus, utcnow
from offload.errors import JobNotFound, JobStateConflict

log = logging.getLogger(__name__)

# Conflicts in a row (another delivery moving the job) before this gives up.
_MAX_ROUNDS = 3
# The attempt that fails at once holds its lease only for the next write.
_LEASE_S = 30.0


def unrunnable_error(task: str | None, lane: str, why: str) -> JobError:
    """The error of a job no worker on `lane` can run, naming its task and lane."""
    named = f"task {task!r}" if task else "its message"
    return JobError(type="Unrunnable", message=f"{named} cannot run on the {lane} lane: {why}")


def fail_unrunnable(store: JobStore, job_id: str, error: JobError, owner: str) -> Job | None:
    """End job `job_id` as FAILURE with `error`; the job as it stands (None: no such job).

    Raises `AwsUnavailable` when the store cannot be reached: the caller keeps the message.
    """
    for _ in range(_MAX_ROUNDS):
        try:
            job = store.get(job_id)
        except JobNotFound:
            return None
        try:
            return _fail(store, job, error, owner)
        except JobStateConflict:
            continue  # moved meanwhile: look again
    log.warning("job %s kept changing; not failed as unrunnable", job_id)
    return None


def _fail(store: JobStore, job: Job, error: JobError, owner: str) -> Job:
    if job.status is JobStatus.PENDING or job.status is JobStatus.RETRY:
        started = store.apply(
            transitions.claim(
                job.job_id,
                source=job.status,
                attempts=job.attempts,
                holder=runner(owner),
                lease_s=_LEASE_S,
            )
        )
        return store.apply(transitions.fail(job.job_id, started.attempts, error))
    lapsed = job.lease_expires_at is not None and job.lease_expires_at <= utcnow()
    if job.status is JobStatus.STARTED and lapsed:
        lapsed_lease = job.lease_expires_at
        return store.apply(
            transitions.fail(job.job_id, job.attempts, error, lease_seen=lapsed_lease)
        )
    return job  # ended, or running elsewhere under a live lease
