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

from pydantic import BaseModel

from offload import claims, metrics
from offload.backoff import retry_delay
from offload.cancel import request_cancel, revoke_running
from offload.catalog import TaskSpec
from offload.context import JobContext
from offload.errors import (
    AwsUnavailable,
    InvalidPayload,
    JobNotFound,
    JobRevoked,
    JobStateConflict,
    PermanentFailure,
    WaitingForJob,
)
from offload.job import Job, JobError, JobStatus, utcnow
from offload.leases import Claim, Verdict, claim
from offload.logs import log_context
from offload.settings import Settings
from offload.store import JobStore, new_token
from offload.waiting import park, wake, wake_parent

log = logging.getLogger(__name__)

_MAX_ERROR_MESSAGE = 2000
# Pauses between tries of a park write through a short store outage.
_PARK_PAUSES_S = (0.5, 1.0, 2.0)
# Backoff (full jitter) between tries of an attempt's end through a store outage.
_SETTLE_BACKOFF_S = 0.5
_SETTLE_BACKOFF_CAP_S = 10.0


class ResultNotSerializable(PermanentFailure):
    """A task returned something that is not JSON."""


# Errors no retry can fix: the job fails at once.
_PERMANENT = (InvalidPayload, PermanentFailure)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `status` is None when this delivery was a duplicate and did
    nothing; `retry_in_s` is set when the job is to be tried again after that delay."""

    status: JobStatus | None
    retry_in_s: float | None = None
    # The job is another worker's for now (or its retry is not due): deliver it again later.
    busy: bool = False
    # The attempt that ran (a takeover runs a later one than its message names).
    attempt: int = 0
    # Why it failed, for FAILURE and RETRY.
    error: JobError | None = None
    # The retry is not due for this long: deliver it again then (a delay past SQS's 15 min).
    wait_s: float | None = None
    # An inline job handed to the spill lane's workers instead of running here.
    spilled: bool = False
    # The attempt parked until this job ends; `wait_s` says when it looks again regardless.
    waits_for: str | None = None


def describe_error(exc: BaseException) -> JobError:
    """The recorded form of an exception: its type name and message, never a traceback."""
    message = str(exc) or repr(exc)
    return JobError(type=type(exc).__name__, message=message[:_MAX_ERROR_MESSAGE])


class ResultTooLarge(PermanentFailure):
    """A task returned more than `Settings.max_result_bytes`."""


def to_json(result: Any, max_bytes: int) -> Any:
    """A task's return value as JSON-compatible data of at most `max_bytes` when encoded."""
    return json.loads(_encoded(result, max_bytes))


def kept_result(result: Any, settings: Settings, job_id: str) -> Any:
    """A task's return value as the job record keeps it: JSON, or a claim on it in S3 when
    it is larger than a record should hold (offload.claims); `ResultTooLarge` above
    `max_result_bytes`."""
    body = _encoded(result, settings.max_result_bytes)
    # Decoded only when it may stay in the record: a large result goes to S3 as it is.
    value = json.loads(body) if len(body) <= settings.claim_check_bytes else None
    if claims.fits(settings, value, body):
        return value
    return claims.check_in(settings, job_id, "result", body)


def _encoded(result: Any, max_bytes: int) -> bytes:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        # NaN and Infinity are not JSON: stored, they would come back as null.
        body = claims.encode(result)
    except (TypeError, ValueError) as exc:
        raise ResultNotSerializable(
            f"result of type {type(result).__name__} is not JSON-serializable: {exc}"
        ) from None
    if len(body) > max_bytes:
        raise ResultTooLarge(f"result is {len(body)} bytes as JSON; the limit is {max_bytes}")
    return body


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
            store=self.store,
        )

    @property
    def _holder(self) -> str | None:
        return self.owner if self.holds_lease else None

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
                    lambda token: self.store.succeed(
                        self.job_id, self.attempt, result, token=token, lease_owner=self._holder
                    )
                )
            except JobStateConflict as exc:
                log.warning(
                    "result of job %s attempt %d refused: %s", self.job_id, self.attempt, exc
                )
                return Outcome(None)
            self._measure("JobsSucceeded")
            self._ended(job)
            return Outcome(JobStatus.SUCCESS, attempt=self.attempt)

    def parked(self, wait: WaitingForJob) -> Outcome:
        """Give the worker back until the job `wait` names ends (offload.waiting)."""
        with self.logged():
            try:
                self._park(wait)
            except JobStateConflict as exc:
                current = exc.current
                if (
                    current is not None
                    and current.cancel_requested
                    and (current.status is JobStatus.STARTED and current.lease_owner == self.owner)
                ):
                    # Cancelled while it ran: it ends here, and what it waits for with it.
                    return self._cancelled_instead_of_parked(wait.child_id)
                log.warning("job %s attempt %d not parked: %s", self.job_id, self.attempt, exc)
                return Outcome(None)
            except AwsUnavailable as exc:
                # Still this worker's: keep the message; once this lease lapses, its next
                # delivery takes the job over (an attempt spent on a store outage).
                log.error("job %s attempt %d could not park: %s", self.job_id, self.attempt, exc)
                return Outcome(None, busy=True)
            try:
                ended = self.store.get(wait.child_id).status.terminal
            except AwsUnavailable:
                ended = False  # then the recheck resumes it
            if ended:
                # It ended between the task's look and the park, too early to find this
                # job waiting: this job is due at once.
                try:
                    wake(self.store, self.job_id, wait.child_id)
                    return Outcome(None, attempt=self.attempt, wait_s=0, waits_for=wait.child_id)
                except (JobStateConflict, AwsUnavailable) as exc:
                    log.warning("job %s not made due at once: %s", self.job_id, exc)
            log.info("job %s attempt %d waits for job %s", self.job_id, self.attempt, wait.child_id)
        return Outcome(None, attempt=self.attempt, wait_s=wait.recheck_s, waits_for=wait.child_id)

    def _park(self, wait: WaitingForJob) -> None:
        """The park write, tried again a few times through a short store outage."""
        for pause_s in (*_PARK_PAUSES_S, None):
            try:
                park(
                    self.store, self.job_id, self.attempt, self.owner, wait.child_id, wait.recheck_s
                )
                return
            except AwsUnavailable:
                if pause_s is None:
                    raise
                time.sleep(pause_s)

    def _cancelled_instead_of_parked(self, child_id: str) -> Outcome:
        try:
            job = revoke_running(self.store, self.job_id, self.attempt)
        except JobStateConflict as exc:
            log.warning("revocation of job %s not recorded: %s", self.job_id, exc)
            return Outcome(None)
        try:
            request_cancel(self.store, child_id)
        except (JobStateConflict, JobNotFound, AwsUnavailable) as exc:
            log.info("job %s: the job it waited for not cancelled: %s", self.job_id, exc)
        self._ended(job)
        return Outcome(JobStatus.REVOKED, attempt=self.attempt)

    def _ended(self, job: Job) -> None:
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
                job = revoke_running(self.store, self.job_id, self.attempt)
            except JobStateConflict as conflict:
                log.warning("revocation of job %s not recorded: %s", self.job_id, conflict)
                return Outcome(None)
            self._ended(job)
            return Outcome(JobStatus.REVOKED, attempt=self.attempt)
        error = describe_error(exc)
        retryable = not isinstance(exc, _PERMANENT) and self.attempt < self.spec.max_attempts
        try:
            if not retryable:
                self._ended(
                    self._settling(
                        lambda token: self.store.fail(
                            self.job_id, self.attempt, error, token=token, lease_owner=self._holder
                        )
                    )
                )
                return Outcome(JobStatus.FAILURE, attempt=self.attempt, error=error)
            delay = retry_delay(self.attempt, self.spec.backoff_s, self.spec.backoff_max_s)
            if max_delay_s is not None:
                delay = min(delay, max_delay_s)
            due = utcnow() + timedelta(seconds=delay)
            self._settling(
                lambda token: self.store.retry(
                    self.job_id, self.attempt, error, due, token=token, lease_owner=self._holder
                )
            )
            return Outcome(JobStatus.RETRY, retry_in_s=delay, attempt=self.attempt, error=error)
        except JobStateConflict as conflict:
            log.warning("failure of job %s not recorded: %s", self.job_id, conflict)
            return Outcome(None)

    def _settling(self, write: Callable[[str], Job]) -> Job:
        """`write(token)`, tried again through a store outage for up to `settle_patience_s`
        and within the task's time limit; every try is the same change (one write token),
        so a try that landed unanswered is not taken for another writer's move."""
        now = time.monotonic()
        # Stop a second before the soft time limit: sleeping into it would fail an attempt
        # whose body finished.
        left = self.spec.timeout_s - (now - (self._started or now)) - 1.0
        deadline = now + max(0.0, min(self.settle_patience_s, left))
        token = new_token()
        for failures in itertools.count(1):
            try:
                return write(token)
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


def not_run(claimed: Claim) -> Outcome:
    """The outcome of a delivery that did not run the task."""
    if claimed.verdict is Verdict.LOST:
        error = claimed.job.error if claimed.job else None
        return Outcome(JobStatus.FAILURE, attempt=claimed.attempt, error=error)
    if claimed.verdict is Verdict.WAIT:
        return Outcome(None, attempt=claimed.attempt, wait_s=claimed.wait_s)
    return Outcome(None, busy=claimed.verdict is Verdict.BUSY)
