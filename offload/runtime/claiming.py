"""Claiming a job for one delivery: start the next attempt and take its lease, or say why not.

A queue delivers at least once, so every delivery asks the store, with conditional writes,
what it may do. The common case (the delivery of the attempt the job waits for) costs one
write; only a conflict costs a second, decided from the item the failed write returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from offload.aws import transitions
from offload.aws.cancel import revoke_unheld
from offload.aws.store import JobStore
from offload.core.holders import LeaseHolder, runner
from offload.core.model import Job, JobError, JobStatus, utcnow
from offload.errors import JobStateConflict

# Conflicts in a row before a delivery gives up and lets the queue deliver it again.
_MAX_ROUNDS = 4
# How early a retry may start: clocks of workers and of SQS's delay differ a little.
_CLOCK_SLACK = timedelta(seconds=1)


class Verdict(StrEnum):
    """What a delivery does with its job."""

    RUN = "run"  # this delivery runs `attempt`
    BUSY = "busy"  # another worker holds a live lease: try later
    WAIT = "wait"  # the retry is not due yet: send it again with the remaining delay
    SKIP = "skip"  # nothing left to do (finished, stale, or no such job): drop the message
    LOST = "lost"  # the last attempt's worker died and none is left: the job has failed


@dataclass(frozen=True)
class Claim:
    """The verdict for one delivery, the attempt it may run and the job as it stands."""

    verdict: Verdict
    attempt: int
    job: Job | None
    reason: str = ""
    wait_s: float = 0.0  # WAIT: how long until the retry is due


def claim(
    store: JobStore, job_id: str, attempt: int, owner: str, lease_s: float, max_attempts: int
) -> Claim:
    """Decide and record what the delivery of `attempt` (1-based, from the message) does,
    for the worker or inline runner named `owner`."""
    holder = runner(owner)
    try:
        job = store.apply(
            transitions.claim(
                job_id,
                source=JobStatus.PENDING if attempt == 1 else JobStatus.RETRY,
                attempts=attempt - 1,
                holder=holder,
                lease_s=lease_s,
                due_by=None if attempt == 1 else utcnow() + _CLOCK_SLACK,
            )
        )
        return Claim(Verdict.RUN, attempt, job)
    except JobStateConflict as conflict:
        current = conflict.current
    for _ in range(_MAX_ROUNDS):
        try:
            return _act(store, current, attempt, holder, lease_s, max_attempts, utcnow())
        except JobStateConflict as conflict:
            current = conflict.current  # someone moved first: decide again from what they left
    return Claim(Verdict.BUSY, attempt, current, "the job keeps changing under this delivery")


def _act(
    store: JobStore,
    job: Job | None,
    attempt: int,
    holder: LeaseHolder,
    lease_s: float,
    max_attempts: int,
    now: datetime,
) -> Claim:
    if job is None:
        return Claim(Verdict.SKIP, attempt, None, "no such job")
    if job.status.terminal:
        return Claim(Verdict.SKIP, attempt, job, f"the job is {job.status.value}")
    done = job.attempts
    if job.status is JobStatus.RETRY:
        if attempt < done:
            return Claim(Verdict.SKIP, attempt, job, f"stale: attempt {done} has run")
        # The retry's own message, or the failed attempt's (its worker may have died before
        # sending the retry): either runs the retry once it is due, and waits until then.
        due = job.next_attempt_at
        if due is not None and due > now + _CLOCK_SLACK:
            wait_s = (due - now).total_seconds()
            return Claim(Verdict.WAIT, done + 1, job, f"due in {wait_s:.0f} s", wait_s=wait_s)
    if job.status is JobStatus.PENDING or job.status is JobStatus.RETRY:
        started = store.apply(
            transitions.claim(
                job.job_id,
                source=job.status,
                attempts=done,
                holder=holder,
                lease_s=lease_s,
                due_by=now + _CLOCK_SLACK if job.status is JobStatus.RETRY else None,
            )
        )
        return Claim(Verdict.RUN, done + 1, started)
    child_id = job.parked_on
    if child_id is not None:
        return _parked(store, job, child_id, holder, lease_s, now)
    # STARTED: someone claimed it. Their lease says whether they are still alive.
    if job.lease_expires_at is not None and job.lease_expires_at > now:
        return Claim(Verdict.BUSY, attempt, job, f"{job.lease_owner} holds the lease")
    if job.cancel_requested:
        # Its worker died after the cancel request: honour the request, do not take over.
        revoked = store.apply(transitions.revoke_running(job.job_id, done))
        return Claim(Verdict.SKIP, attempt, revoked, "cancelled while its worker was lost")
    lost = JobError(
        type="WorkerLost",
        message=f"attempt {done} stopped renewing its lease (worker {job.lease_owner})",
    )
    if done >= max_attempts:
        failed = store.apply(
            transitions.fail(job.job_id, done, lost, lease_seen=job.lease_expires_at)
        )
        return Claim(Verdict.LOST, done, failed, lost.message)
    taken = store.apply(
        transitions.take_over(
            job.job_id,
            attempts=done,
            holder=holder,
            lease_s=lease_s,
            lease_seen=job.lease_expires_at,
            lost=lost,
        )
    )
    return Claim(Verdict.RUN, done + 1, taken, f"took over from {job.lease_owner}")


def _parked(
    store: JobStore, job: Job, child_id: str, holder: LeaseHolder, lease_s: float, now: datetime
) -> Claim:
    """A job parked until job `child_id` ends (offload.runtime.waiting): resume the same attempt
    once its wait is due (woken, or its recheck time), or wait until then."""
    if job.cancel_requested:
        revoked = revoke_unheld(store, job, child_id)
        return Claim(Verdict.SKIP, job.attempts, revoked, "cancelled while it waited")
    due = job.lease_expires_at
    if due is not None and due > now + _CLOCK_SLACK:
        wait_s = (due - now).total_seconds()
        return Claim(Verdict.WAIT, job.attempts, job, f"waits for job {child_id}", wait_s=wait_s)
    resumed = store.apply(transitions.resume(job, holder, lease_s))
    return Claim(Verdict.RUN, job.attempts, resumed, f"resumed after waiting for job {child_id}")
