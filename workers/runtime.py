"""What a worker does with one delivery: run the attempt, then schedule a retry on SQS.

The Celery task around it stays thin (STYLE.md 4): parsing, status and retries live here.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, assert_never

from offload.aws import celery_protocol
from offload.aws.dlq import bury
from offload.aws.queues import QueuePublisher, queue_lane
from offload.aws.store import JobStore
from offload.core.catalog import CATALOG, Catalog, TaskSpec
from offload.core.model import JobStatus
from offload.errors import AwsUnavailable, TimeLimitExceeded
from offload.observability.logs import log_context
from offload.runtime.attempt import Attempt
from offload.runtime.outcomes import (
    Busy,
    Dropped,
    Failed,
    NotDue,
    Outcome,
    Parked,
    Retrying,
    Revoked,
    Spilled,
    Succeeded,
)
from offload.settings import Settings
from offload.submit.children import ChildJobs

log = logging.getLogger(__name__)


class Runtime:
    """The store and publisher of one worker process (made after the pool forks).

    :param settings: the worker's settings.
    :param catalog: the tasks its jobs may submit jobs of (`JobContext.submit_job`).
    """

    def __init__(self, settings: Settings, catalog: Catalog = CATALOG) -> None:
        self.store = JobStore(settings)
        self.publisher = QueuePublisher(settings)
        self.submitter = ChildJobs(catalog, self.store)

    def execute(
        self, spec: TaskSpec, job_id: str, payload: Any, attempt: int, owner: str
    ) -> Outcome:
        """Run the delivery of attempt `attempt` of a job, as lease holder `owner`.

        A retry is a new SQS message with a delay, so no ETA sits in worker memory and the
        worker's slot is free while the job waits."""
        with log_context(job_id=job_id):
            return self._execute(spec, job_id, payload, attempt, owner)

    def _execute(
        self, spec: TaskSpec, job_id: str, payload: Any, attempt: int, owner: str
    ) -> Outcome:
        settings = self.store.settings
        outcome = Attempt(
            self.store,
            spec,
            job_id,
            attempt,
            payload,
            owner=owner,
            lease_s=settings.lease_s,
            settle_patience_s=settings.worker_settle_patience_s,
            submitter=self.submitter,
        ).run()
        self.settle(spec, job_id, payload, attempt, outcome)
        return outcome

    def settle(
        self, spec: TaskSpec, job_id: str, payload: Any, attempt: int, outcome: Outcome
    ) -> None:
        """What follows a delivery's outcome: dead-letter a failure, queue a retry or a wait.

        `AwsUnavailable` when a retry could not be queued (keep the message then)."""
        log.info(
            "job %s (%s) delivery of attempt %d: %s",
            job_id,
            spec.name,
            attempt,
            _said(outcome),
        )
        match outcome:
            case Failed():
                self._bury(spec, job_id, payload, outcome)
            case NotDue(attempt=ran, wait_s=delay_s) | Parked(attempt=ran, wait_s=delay_s):
                # SQS delays a message 15 minutes at most: longer backoffs go in steps.
                self.publisher.send(spec, job_id, payload, attempt=ran, delay_s=delay_s)
            case Retrying(attempt=ran, retry_in_s=delay_s):
                try:
                    self.publisher.send(spec, job_id, payload, attempt=ran + 1, delay_s=delay_s)
                except AwsUnavailable:
                    # The message is then kept (Reject): delivered again once the retry is
                    # due, it runs the next attempt itself.
                    log.error("job %s: retry %d could not be queued", job_id, ran + 1)
                    raise
            case Succeeded() | Revoked() | Busy() | Dropped() | Spilled():
                pass  # ended, or nothing to send: the message is acked (or kept, if busy)
            case _:
                assert_never(outcome)

    def time_limit_exceeded(self, spec: TaskSpec, job_id: str, owner: str, limit_s: float) -> None:
        """Record that the hard time limit ended `owner`'s attempt (from the main process).

        RETRY or FAILURE per the task's policy; the delivery itself goes back to the queue,
        and its next receipt runs the retry once due (or finds the job ended)."""
        with log_context(job_id=job_id):
            self._time_limit_exceeded(spec, job_id, owner, limit_s)

    def _time_limit_exceeded(self, spec: TaskSpec, job_id: str, owner: str, limit_s: float) -> None:
        job = self.store.get(job_id)
        if job.status is not JobStatus.STARTED or job.lease_owner != owner:
            return  # already recorded, or taken over by another worker
        attempt = Attempt(self.store, spec, job_id, job.attempts, job.payload, owner=owner)
        outcome = attempt.failed(TimeLimitExceeded(f"{spec.name} was stopped after {limit_s:g} s"))
        log.error(
            "job %s attempt %d: hard time limit exceeded: %s",
            job_id,
            job.attempts,
            outcome.status.value if outcome.status else "not recorded",
        )
        if isinstance(outcome, Failed):
            self._bury(spec, job_id, job.payload, outcome)

    def _bury(self, spec: TaskSpec, job_id: str, payload: Any, outcome: Failed) -> None:
        """Keep a failed job's message in its lane's DLQ, where an operator replays it."""
        error = outcome.error
        if error is not None and error.type == "InvalidPayload":
            reason = error.message  # names the task, the lane and each field
        elif error is not None and error.type == "WorkerLost":
            reason = "its worker was lost on the last attempt"
        else:
            reason = f"failed after {outcome.attempt} of {spec.max_attempts} attempts"
        body = celery_protocol.encode(
            task=spec.name,
            task_id=job_id,
            kwargs={"payload": payload, "attempt": outcome.attempt},
            routing_key=queue_lane(spec),
        )
        try:
            bury(
                self.store.settings,
                queue_lane(spec),
                body,
                reason,
                job_id=job_id,
                task=spec.name,
                error=error,
            )
        except AwsUnavailable as exc:
            # The job is FAILURE in the store all the same; only the replay handle is missing.
            log.error("job %s failed but could not be dead-lettered: %s", job_id, exc)


def _said(outcome: Outcome) -> str:
    match outcome:
        case Parked(waits_for=child_id):
            return f"waits for job {child_id}"
        case NotDue(wait_s=wait_s):
            return f"not due for {wait_s:.0f} s"
        case Busy():
            return "busy"
    return outcome.status.value if outcome.status else "dropped"


@lru_cache(maxsize=1)
def runtime_for(settings: Settings) -> Runtime:
    """The process's runtime, made on first use (in the pool child, after fork)."""
    return Runtime(settings)
