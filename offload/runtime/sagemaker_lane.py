"""Settling sagemaker-lane jobs: from SageMaker's notifications (the completions function),
and, by the scheduled sweep, those whose notification never came. The invocation itself is
`offload.aws.sagemaker.SageMakerInvoker`'s; here each notification is matched to the
attempt it is about, and that attempt ends through the same `Attempt` as on every lane.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from enum import StrEnum
from typing import assert_never

from offload.aws import transitions
from offload.aws.sagemaker import Notification, SageMakerInvoker
from offload.aws.store import JobStore
from offload.core.catalog import Catalog, TaskSpec
from offload.core.model import Job, JobStatus, utcnow
from offload.errors import AwsUnavailable, JobNotFound, JobStateConflict, PermanentFailure
from offload.observability import metrics
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

log = logging.getLogger(__name__)


class Settlement(StrEnum):
    """What became of a notification's job (or of a job the sweep looked at)."""

    SUCCESS = "success"
    FAILURE = "failure"
    REVOKED = "revoked"  # cancelled while it ran: its outcome is dropped
    RETRIED = "retried"  # the attempt failed; the next one was sent to the endpoint
    STALE = "stale"  # about an earlier attempt, or settled already: nothing to do
    UNKNOWN = "unknown"  # no such job
    INVOKED = "invoked"  # (sweep) a job never sent was sent now
    WAITING = "waiting"  # (sweep) within its time: left to its notification
    UNAVAILABLE = "unavailable"  # (sweep) AWS failed: left for the next round
    RACED = "raced"  # (sweep) its notification came meanwhile
    ERROR = "error"  # (sweep) it could not be resolved (logged)


class SageMakerLane:
    """Settles sagemaker-lane jobs from SageMaker's notifications, and sweeps for the lost.

    :param settings: names the bucket and prefixes endpoint names with the stack's.
    :param store: the job store.
    :param catalog: the tasks (to find a notified job's policy).
    """

    def __init__(self, settings: Settings, store: JobStore, catalog: Catalog) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.invoker = SageMakerInvoker(settings, store)

    def complete(self, notification: Notification) -> Settlement:
        """Settle the job a notification is about; what happened.

        `AwsUnavailable` propagates: the notification is then delivered again."""
        try:
            job = self.store.get(notification.inference_id)
        except JobNotFound:
            log.warning("notification for unknown job %s dropped", notification.inference_id)
            return Settlement.UNKNOWN
        try:
            return self._complete(job, notification)
        except JobStateConflict as exc:
            # The job moved meanwhile (its sweep, a cancel, a copy of this notification).
            log.info("notification for job %s raced: %s", job.job_id, exc)
            return Settlement.STALE

    def _complete(self, job: Job, notification: Notification) -> Settlement:
        spec = self.catalog.get(job.task)
        if job.status in (JobStatus.PENDING, JobStatus.RETRY):
            if notification.input_location == self.invoker.input_location(
                job.job_id, job.attempts + 1
            ):
                # Its invocation reached SageMaker but its STARTED was never recorded.
                job = self.invoker.record_started(job, notification, job.attempts + 1)
            elif job.status is JobStatus.RETRY and (
                notification.input_location == job.input_location
            ):
                # This notification's failure was recorded, but the retry's invocation was
                # not sent (it failed): send it now.
                self.invoker.invoke(spec, job, job.attempts + 1)
                return Settlement.RETRIED
        if job.status is not JobStatus.STARTED or job.input_location != notification.input_location:
            # Settled already (a repeated notification), or about an earlier attempt.
            log.info("notification for job %s (%s) is stale", job.job_id, job.status.value)
            return Settlement.STALE
        if job.cancel_requested:
            # An inference cannot be stopped; its outcome is dropped as the job's was asked.
            self.store.apply(transitions.revoke_running(job.job_id, job.attempts))
            return Settlement.REVOKED
        attempt = Attempt(
            self.store,
            spec,
            job.job_id,
            job.attempts,
            job.payload,
            owner="sagemaker",
            holds_lease=False,
        )
        attempt.request_id, attempt.created_at = job.request_id, job.created_at
        if notification.status == "Completed":
            try:
                result = self.invoker.output(notification.output_location or job.output_location)
            except PermanentFailure as exc:  # not JSON, too large, NaN: no retry reads it
                return self._settle(attempt.failed(exc), spec, job)
            return self._settle(attempt.succeeded(result), spec, job)
        return self._settle(attempt.failed(self.invoker.failure(notification, job)), spec, job)

    def _settle(self, outcome: Outcome, spec: TaskSpec, job: Job) -> Settlement:
        match outcome:
            case Retrying(attempt=attempt):
                # SageMaker queues invocations itself: the retry goes now, not after a backoff.
                retried = self.store.get(job.job_id)
                if retried.status is not JobStatus.RETRY:
                    return Settlement.STALE  # cancelled meanwhile
                self.invoker.invoke(spec, retried, attempt + 1)
                return Settlement.RETRIED
            case Failed():
                metrics.count("SageMakerFailures", spec.name, spec.lane)
                return Settlement.FAILURE
            case Succeeded():
                return Settlement.SUCCESS
            case Revoked():
                return Settlement.REVOKED
            case NotDue() | Parked() | Busy() | Dropped() | Spilled():
                return Settlement.STALE  # nothing was recorded
            case _:
                assert_never(outcome)

    # -- the sweep -------------------------------------------------------------------------

    def sweep(self, stale_after_s: float, *, now: datetime | None = None) -> dict[str, int]:
        """Resolve sagemaker jobs unchanged for `stale_after_s` whose notification never
        came: by the output or failure object SageMaker wrote, by invoking again a job that
        was never sent, or, past the task's time limit with neither, as a lost attempt
        (retried or failed by policy). How many jobs ended up how."""
        now = now or utcnow()
        counts: Counter[str] = Counter()
        for job in self.store.in_flight("sagemaker", now - timedelta(seconds=stale_after_s)):
            with log_context(job_id=job.job_id, request_id=job.request_id):
                try:
                    counts[str(self._sweep_one(job, now, stale_after_s))] += 1
                except AwsUnavailable as exc:
                    log.warning("sweep: job %s left for the next round: %s", job.job_id, exc)
                    counts[str(Settlement.UNAVAILABLE)] += 1
                except JobStateConflict:
                    counts[str(Settlement.RACED)] += 1  # its notification came meanwhile
                except Exception:
                    # One job that cannot be resolved (its task renamed away, an endpoint
                    # deleted) must not stop the sweep for every job behind it.
                    log.exception("sweep: job %s could not be resolved", job.job_id)
                    counts[str(Settlement.ERROR)] += 1
        if counts:
            log.info("sagemaker sweep: %s", dict(counts))
        return dict(counts)

    def _sweep_one(self, job: Job, now: datetime, stale_after_s: float) -> Settlement:
        spec = self.catalog.get(job.task)
        if job.status in (JobStatus.PENDING, JobStatus.RETRY):
            # Never sent (the submit or the retry stopped half way): send it now.
            self.invoker.invoke(spec, job, job.attempts + 1)
            return Settlement.INVOKED
        if job.status is not JobStatus.STARTED:
            return Settlement.STALE
        if self.invoker.object_exists(job.output_location):
            return self.complete(
                Notification(
                    job.job_id, "Completed", job.input_location, job.output_location, None, None
                )
            )
        if self.invoker.object_exists(job.failure_location):
            reason = "SageMaker wrote a failure object; its notification was lost"
            return self.complete(self._failed(job, reason))
        started = job.started_at or job.updated_at
        waited = (now - started).total_seconds()
        # It may queue for its TTL, then run for its time limit, before anything is written.
        if waited < self.settings.sagemaker_request_ttl_s + spec.timeout_s + stale_after_s:
            return Settlement.WAITING
        reason = f"no notification, output or failure {waited:.0f} s after the invocation"
        return self.complete(self._failed(job, reason))

    def _failed(self, job: Job, reason: str) -> Notification:
        return Notification(
            job.job_id, "Failed", job.input_location, None, job.failure_location, reason
        )
