"""One attempt of one job, the same on every lane: begin (conditional), run, settle.

Lanes differ only in how they wait for a retry (the inline lane sleeps, queue lanes re-send
the message with an SQS delay) and how they bound a task's time.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from offload.aws import claims, transitions
from offload.aws.job_services import AwsJobServices
from offload.aws.store import JobStore, new_token
from offload.aws.wake import wake_parent
from offload.aws.writes import Write
from offload.core.backoff import retry_delay
from offload.core.catalog import TaskSpec
from offload.core.context import JobContext, NoSubmitter, Submitter
from offload.core.holders import LeaseHolder, runner
from offload.core.model import Job, JobStatus, utcnow
from offload.core.results import describe_error, encoded_result
from offload.errors import (
    AwsUnavailable,
    InvalidPayload,
    JobRevoked,
    JobStateConflict,
    PermanentFailure,
    WaitingForJob,
)
from offload.observability import metrics
from offload.observability.logs import log_context
from offload.runtime.claiming import Claim, Verdict, claim
from offload.runtime.outcomes import Dropped, Failed, Outcome, Retrying, Revoked, Succeeded, not_run
from offload.runtime.waiting import park_attempt
from offload.settings import Settings

log = logging.getLogger(__name__)

# Backoff (full jitter) between tries of an attempt's end through a store outage.
_SETTLE_BACKOFF_S = 0.5
_SETTLE_BACKOFF_CAP_S = 10.0


# Errors no retry can fix: the job fails at once.
_PERMANENT = (InvalidPayload, PermanentFailure)


def kept_result(result: Any, settings: Settings, job_id: str) -> Any:
    """A task's return value as the job record keeps it: JSON, or a claim on it in S3 when
    it is larger than a record should hold (offload.aws.claims); `ResultTooLarge` above
    `max_result_bytes`."""
    body = encoded_result(result, settings.max_result_bytes)
    # Decoded only when it may stay in the record: a large result goes to S3 as it is.
    value = json.loads(body) if len(body) <= settings.claim_check_bytes else None
    if claims.fits(settings, value, body):
        return value
    return claims.check_in(settings, job_id, "result", body)


@dataclass
class Attempt:
    """Attempt number `attempt` of job `job_id`."""

    store: JobStore
    spec: TaskSpec
    job_id: str
    attempt: int
    payload: Any
    owner: str = "inline"
    lease_s: float = 60.0
    # How long the end of an attempt (SUCCESS, RETRY, FAILURE) is written again through a
    # store outage. A worker waits (its heartbeat keeps the lease meanwhile): giving up would
    # leave a finished body's job STARTED, for another worker to run it again.
    settle_patience_s: float = 0.0
    # Whether `owner` holds the job's lease while the attempt runs, so that its end is
    # written only while it still does (attempt numbers start again at a replay; lease
    # holders do not). A SageMaker notification settles an attempt nobody leases.
    holds_lease: bool = True
    # Submits the jobs its task hands work to (`JobContext.submit_job`): the process's.
    submitter: Submitter = field(default_factory=NoSubmitter)
    context: JobContext = field(init=False)
    # Known once claimed: the request that submitted the job, for the log lines.
    request_id: str | None = field(default=None, init=False)
    created_at: datetime | None = field(default=None, init=False)
    _started: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.context = JobContext(
            job_id=self.job_id,
            task=self.spec.name,
            attempt=self.attempt,
            settings=self.store.settings,
            services=AwsJobServices(self.store),
            submitter=self.submitter,
        )

    @property
    def holder(self) -> LeaseHolder | None:
        """Who holds the lease of the running attempt; None where nobody does."""
        return runner(self.owner) if self.holds_lease else None

    def logged(self) -> AbstractContextManager[None]:
        """Within it, log lines carry this job's id (and its request's, once claimed).

        Each method enters it: they run on whichever thread the lane uses."""
        return log_context(job_id=self.job_id, request_id=self.request_id)

    def begin(self) -> Claim:
        """Claim the job for this delivery; on RUN, `attempt` is the attempt it runs."""
        with self.logged():
            claimed = claim(
                self.store,
                self.job_id,
                self.attempt,
                self.owner,
                self.lease_s,
                self.spec.max_attempts,
            )
        if claimed.job is not None:
            self.request_id = claimed.job.request_id
            self.created_at = claimed.job.created_at
        with self.logged():
            self._claimed(claimed)
        return claimed

    def _claimed(self, claimed: Claim) -> None:
        if claimed.verdict is Verdict.RUN:
            self.attempt = self.context.attempt = claimed.attempt
            if claimed.job is not None:
                self.context.previous_attempts = sum(run.attempts for run in claimed.job.history)
                self.context.caller = claimed.job.caller
        else:
            log.warning(
                "job %s, delivery of attempt %d: %s (%s)",
                self.job_id,
                self.attempt,
                claimed.verdict.value,
                claimed.reason,
            )

    def invoke(self) -> Any:
        """Validate the payload and call the task; returns the JSON result or raises."""
        with self.logged():
            self._started = time.monotonic()
            settings = self.store.settings
            resolved = claims.resolve(settings, self.payload, owner=self.job_id)
            payload = self.spec.parse(resolved, lane=self.spec.lane)
            result = self.spec.call(payload, self.context)
            return kept_result(result, settings, self.job_id)

    def succeeded(self, result: Any) -> Outcome:
        """Record SUCCESS."""
        with self.logged():
            try:
                job = self._settling(
                    lambda: transitions.succeed(self.job_id, self.attempt, result, self.holder)
                )
            except JobStateConflict as exc:
                log.warning(
                    "result of job %s attempt %d refused: %s", self.job_id, self.attempt, exc
                )
                return Dropped()
            self._measure("JobsSucceeded")
            self.ended(job)
            return Succeeded(self.attempt)

    def parked(self, wait: WaitingForJob) -> Outcome:
        """Give the worker back until the job `wait` names ends (offload.runtime.waiting)."""
        with self.logged():
            return park_attempt(
                self.store, self.job_id, self.attempt, runner(self.owner), wait, self.ended
            )

    def ended(self, job: Job) -> None:
        """A job has ended: wake the job that waits for it, if one does."""
        if job.parent_id is not None:
            wake_parent(self.store, job)

    def failed(self, exc: BaseException, *, max_delay_s: float | None = None) -> Outcome:
        """Record RETRY with the next attempt's time, or FAILURE when no attempt is left
        (REVOKED when the task stopped because its cancellation was asked)."""
        with self.logged():
            outcome = self._failed(exc, max_delay_s)
        if outcome.status is JobStatus.FAILURE:
            self._measure("JobsFailed")
        elif outcome.status is JobStatus.RETRY:
            self._measure("JobsRetried")
        return outcome

    def _measure(self, ended: str) -> None:
        """Count how the attempt ended; time its run, and the job's if it is over."""
        task, lane = self.spec.name, self.spec.lane
        metrics.count(ended, task, lane)
        if self._started is not None:
            metrics.milliseconds(
                "RunDuration", task, lane, 1000 * (time.monotonic() - self._started)
            )
        if ended != "JobsRetried" and self.created_at is not None:
            age = (utcnow() - self.created_at).total_seconds()
            metrics.milliseconds("JobDuration", task, lane, 1000 * age)

    def _failed(self, exc: BaseException, max_delay_s: float | None) -> Outcome:
        if isinstance(exc, JobRevoked):
            try:
                job = self.store.apply(transitions.revoke_running(self.job_id, self.attempt))
            except JobStateConflict as conflict:
                log.warning("revocation of job %s not recorded: %s", self.job_id, conflict)
                return Dropped()
            self.ended(job)
            return Revoked(self.attempt)
        error = describe_error(exc)
        retryable = not isinstance(exc, _PERMANENT) and self.attempt < self.spec.max_attempts
        try:
            if not retryable:
                self.ended(
                    self._settling(
                        lambda: transitions.fail(
                            self.job_id, self.attempt, error, holder=self.holder
                        )
                    )
                )
                return Failed(self.attempt, error)
            delay = retry_delay(self.attempt, self.spec.backoff_s, self.spec.backoff_max_s)
            if max_delay_s is not None:
                delay = min(delay, max_delay_s)
            due = utcnow() + timedelta(seconds=delay)
            self._settling(
                lambda: transitions.retry(self.job_id, self.attempt, error, due, self.holder)
            )
            return Retrying(self.attempt, error, delay)
        except JobStateConflict as conflict:
            log.warning("failure of job %s not recorded: %s", self.job_id, conflict)
            return Dropped()

    def _settling(self, write: Callable[[], Write]) -> Job:
        """The write `write()` builds (with fresh times each try), tried again through a store
        outage for up to `settle_patience_s` and within the task's time limit; every try is
        the same change (one write token), so a try that landed unanswered is not taken for
        another writer's move."""
        now = time.monotonic()
        # Stop a second before the soft time limit: sleeping into it would fail an attempt
        # whose body finished.
        left = self.spec.timeout_s - (now - (self._started or now)) - 1.0
        deadline = now + max(0.0, min(self.settle_patience_s, left))
        token = new_token()
        for failures in itertools.count(1):
            try:
                return self.store.apply(write(), token=token)
            except AwsUnavailable as exc:
                if time.monotonic() >= deadline:
                    raise
                pause = retry_delay(failures, _SETTLE_BACKOFF_S, _SETTLE_BACKOFF_CAP_S)
                log.warning(
                    "job %s attempt %d: end not recorded (%s); again in %.1f s",
                    self.job_id,
                    self.attempt,
                    exc,
                    pause,
                )
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        raise AssertionError("unreachable")

    def run(self) -> Outcome:
        """Begin, invoke and settle, in this thread (the queue lanes' path)."""
        claimed = self.begin()
        if claimed.verdict is not Verdict.RUN:
            return not_run(claimed)
        try:
            result = self.invoke()
        except WaitingForJob as wait:
            return self.parked(wait)
        except Exception as exc:
            with self.logged():
                log.info(
                    "job %s attempt %d raised %s",
                    self.job_id,
                    self.attempt,
                    type(exc).__name__,
                    exc_info=not isinstance(exc, _PERMANENT),
                )
            return self.failed(exc)
        return self.succeeded(result)
