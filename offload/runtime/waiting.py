"""A job that waits for another job it submitted, without holding a worker meanwhile.

A cpu or gpu task may hand part of its work to a job of another task (rag.answer hands its
generation to `llm.generate` on the sagemaker lane) and give its worker back while that
job runs:

    child = ctx.submit_job("generate", "llm.generate", {"prompt": ...})
    if not child.status.terminal:
        ctx.wait_for(child)  # raises WaitingForJob: the attempt parks

A parked attempt stays STARTED (DESIGN.md's moves have no waiting state): its lease is
held by nobody (`ParkedOn(<child id>)`, offload.core.holders) until a recheck time, and its
message is sent again with that delay. The child's final write wakes it: the lease falls due
now and the message goes now. The delivery that finds the lease due resumes the *same*
attempt, and the task runs again from its start (steps it keeps in S3 make that cheap) and
finds the child ended. A lost wake-up costs only time: the recheck message resumes it all
the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from offload.aws import transitions
from offload.aws.cancel import request_cancel
from offload.aws.store import JobStore
from offload.core.holders import LeaseHolder
from offload.core.model import Job, JobStatus
from offload.errors import AwsUnavailable, JobNotFound, JobStateConflict, WaitingForJob
from offload.runtime.outcomes import Busy, Dropped, Outcome, Parked, Revoked

log = logging.getLogger(__name__)

# Pauses between tries of a park write through a short store outage.
_PARK_PAUSES_S = (0.5, 1.0, 2.0)


def park_attempt(
    store: JobStore,
    job_id: str,
    attempt: int,
    holder: LeaseHolder,
    wait: WaitingForJob,
    ended: Callable[[Job], None],
) -> Outcome:
    """Hand attempt `attempt` from `holder` to the wait that `wait` names; how the delivery
    ended. `ended` is told of the job if it ends here instead (cancelled meanwhile)."""
    try:
        _park(store, job_id, attempt, holder, wait)
    except JobStateConflict as exc:
        current = exc.current
        if (
            current is not None
            and current.cancel_requested
            and (current.status is JobStatus.STARTED and current.holder == holder)
        ):
            # Cancelled while it ran: it ends here, and what it waits for with it.
            return _cancelled_instead_of_parked(store, job_id, attempt, wait.child_id, ended)
        log.warning("job %s attempt %d not parked: %s", job_id, attempt, exc)
        return Dropped()
    except AwsUnavailable as exc:
        # Still this worker's: keep the message; once this lease lapses, its next delivery
        # takes the job over (an attempt spent on a store outage).
        log.error("job %s attempt %d could not park: %s", job_id, attempt, exc)
        return Busy()
    try:
        child_ended = store.get(wait.child_id).status.terminal
    except AwsUnavailable:
        child_ended = False  # then the recheck resumes it
    if child_ended:
        # It ended between the task's look and the park, too early to find this job
        # waiting: this job is due at once.
        try:
            store.apply(transitions.wake(job_id, wait.child_id))
            return Parked(attempt, wait.child_id, 0)
        except (JobStateConflict, AwsUnavailable) as exc:
            log.warning("job %s not made due at once: %s", job_id, exc)
    log.info("job %s attempt %d waits for job %s", job_id, attempt, wait.child_id)
    return Parked(attempt, wait.child_id, wait.recheck_s)


def _park(
    store: JobStore, job_id: str, attempt: int, holder: LeaseHolder, wait: WaitingForJob
) -> None:
    """The park write, tried again a few times through a short store outage."""
    park = transitions.park(job_id, attempt, holder, wait.child_id, wait.recheck_s)
    for pause_s in (*_PARK_PAUSES_S, None):
        try:
            store.apply(park)
            return
        except AwsUnavailable:
            if pause_s is None:
                raise
            time.sleep(pause_s)


def _cancelled_instead_of_parked(
    store: JobStore, job_id: str, attempt: int, child_id: str, ended: Callable[[Job], None]
) -> Outcome:
    try:
        job = store.apply(transitions.revoke_running(job_id, attempt))
    except JobStateConflict as exc:
        log.warning("revocation of job %s not recorded: %s", job_id, exc)
        return Dropped()
    try:
        request_cancel(store, child_id)
    except (JobStateConflict, JobNotFound, AwsUnavailable) as exc:
        log.info("job %s: the job it waited for not cancelled: %s", job_id, exc)
    ended(job)
    return Revoked(attempt)
