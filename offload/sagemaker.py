"""The sagemaker lane: jobs run on a SageMaker asynchronous inference endpoint.

Dispatch stores the request the task builds under the job's prefix
(`jobs/<id>/sagemaker/<attempt>/input.json`) and calls `invoke_endpoint_async` with
`InferenceId` = the job id; the job is STARTED with the input, output and failure locations.
SageMaker then posts a notification to its success or error SNS topic, which an SQS queue
hands to the completions function (`functions/completions`): `complete` moves the job to
SUCCESS with the output read from S3, or records the attempt's failure by the task's retry
policy (a retry invokes the endpoint again). A notification is matched to an attempt by its
input location, so a late or repeated one never settles a later attempt.

Only boto3's `sagemaker-runtime` client: the sagemaker SDK is never imported at run time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from offload import aws, claims, metrics
from offload.cancel import revoke_running
from offload.catalog import Catalog, TaskSpec
from offload.context import JobContext
from offload.errors import AwsUnavailable, JobNotFound, JobStateConflict, PermanentFailure
from offload.execution import Attempt, Outcome, to_json
from offload.items import timestamp
from offload.job import Job, JobStatus, utcnow
from offload.logs import log_context
from offload.settings import Settings
from offload.store import JobStore

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
# What of a failure object goes into the job's error.
_FAILURE_DETAIL_BYTES = 1000


class BadNotification(ValueError):
    """A message on the completions queue that is not a SageMaker async notification."""


class InvokedNotRecorded(AwsUnavailable):
    """The endpoint took the job, but the job store could not record it: do not discard it."""


class InferenceFailed(RuntimeError):
    """SageMaker reported the invocation failed; retried per the task's policy."""


class OutputUnreadable(PermanentFailure):
    """The endpoint's output is not JSON a job can hold."""


@dataclass(frozen=True)
class Notification:
    """SageMaker's asynchronous inference notification (the SNS message's body)."""

    inference_id: str
    status: Literal["Completed", "Failed"]
    input_location: str | None
    output_location: str | None
    failure_location: str | None
    failure_reason: str | None

    @classmethod
    def parse(cls, message: str | dict[str, Any]) -> Notification:
        """From SageMaker's JSON; `BadNotification` when it is not one."""
        try:
            data = json.loads(message) if isinstance(message, str) else message
            status = data["invocationStatus"]
            inference_id = data["inferenceId"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadNotification(f"not a SageMaker async notification: {exc}") from None
        if status not in ("Completed", "Failed") or not isinstance(inference_id, str):
            raise BadNotification(f"unknown invocationStatus {status!r}")
        request = data.get("requestParameters") or {}
        response = data.get("responseParameters") or {}
        return cls(
            inference_id=inference_id,
            status=status,
            input_location=request.get("inputLocation"),
            output_location=response.get("outputLocation"),
            failure_location=response.get("failureLocation"),
            failure_reason=data.get("failureReason"),
        )

    @classmethod
    def from_sqs_body(cls, body: str) -> Notification:
        """From an SQS message body: the SNS envelope around it, or the message itself
        (raw message delivery)."""
        try:
            envelope = json.loads(body)
        except ValueError as exc:
            raise BadNotification(f"SQS body is not JSON: {exc}") from None
        if isinstance(envelope, dict) and envelope.get("Type") == "Notification":
            return cls.parse(envelope.get("Message", ""))
        return cls.parse(envelope)


class SageMakerLane:
    """Invokes endpoints for jobs and settles the jobs from SageMaker's notifications.

    :param settings: names the bucket and prefixes endpoint names with the stack's.
    :param store: the job store.
    :param catalog: the tasks (to find a notified job's policy).
    """

    def __init__(self, settings: Settings, store: JobStore, catalog: Catalog) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog

    def endpoint_name(self, spec: TaskSpec) -> str:
        """The deployed endpoint of a sagemaker task."""
        return f"{self.settings.stack_name}-{spec.endpoint}"

    def invoke(self, spec: TaskSpec, job: Job, attempt: int) -> Job:
        """Send attempt `attempt` of `job` to its endpoint; the job as STARTED.

        `AwsUnavailable` when S3 or SageMaker could not take it (the job is then as it was);
        `JobStateConflict` when the job moved meanwhile."""
        context = JobContext(
            job_id=job.job_id,
            task=spec.name,
            attempt=attempt,
            settings=self.settings,
            store=self.store,
            caller=job.caller,
        )
        payload = spec.parse(
            claims.resolve(self.settings, job.payload, owner=job.job_id), lane=spec.lane
        )
        request = to_json(spec.call(payload, context), 6 * 1024 * 1024)
        bucket = self.settings.bucket_name()
        key = self.input_location(job.job_id, attempt).removeprefix(f"s3://{bucket}/")
        with aws.unavailable_as("S3"):
            aws.s3(self.settings).put_object(
                Bucket=bucket, Key=key, Body=json.dumps(request).encode(), ContentType=CONTENT_TYPE
            )
        input_location = f"s3://{bucket}/{key}"
        with aws.unavailable_as("SageMaker"):
            response = aws.sagemaker_runtime(self.settings).invoke_endpoint_async(
                EndpointName=self.endpoint_name(spec),
                ContentType=CONTENT_TYPE,
                Accept=CONTENT_TYPE,
                InputLocation=input_location,
                InferenceId=job.job_id,
                InvocationTimeoutSeconds=int(min(3600, max(1, spec.timeout_s))),
                # How long it may wait in the endpoint's queue (scale from zero, backlog);
                # said explicitly, since the sweep's patience is built on it.
                RequestTTLSeconds=self.settings.sagemaker_request_ttl_s,
            )
        log.info("job %s attempt %d sent to %s", job.job_id, attempt, self.endpoint_name(spec))
        try:
            return self._started(
                job.job_id,
                attempt,
                {
                    "input_location": input_location,
                    "output_location": response["OutputLocation"],
                    "failure_location": response.get("FailureLocation"),
                    "lease_owner": f"sagemaker:{self.endpoint_name(spec)}",
                },
            )
        except AwsUnavailable as exc:
            # SageMaker has it: the job must not be discarded as never sent. Its
            # notification finds it PENDING and settles it all the same.
            raise InvokedNotRecorded(exc.service, str(exc)) from exc

    def complete(self, notification: Notification) -> str:
        """Settle the job a notification is about; what happened, in a word.

        `AwsUnavailable` propagates: the notification is then delivered again."""
        try:
            job = self.store.get(notification.inference_id)
        except JobNotFound:
            log.warning("notification for unknown job %s dropped", notification.inference_id)
            return "unknown"
        try:
            return self._complete(job, notification)
        except JobStateConflict as exc:
            # The job moved meanwhile (its sweep, a cancel, a copy of this notification).
            log.info("notification for job %s raced: %s", job.job_id, exc)
            return "stale"

    def _complete(self, job: Job, notification: Notification) -> str:
        spec = self.catalog.get(job.task)
        if job.status in (JobStatus.PENDING, JobStatus.RETRY):
            if notification.input_location == self.input_location(job.job_id, job.attempts + 1):
                # Its invocation reached SageMaker but its STARTED was never recorded.
                job = self._record_started(job, notification, job.attempts + 1)
            elif job.status is JobStatus.RETRY and (
                notification.input_location == job.input_location
            ):
                # This notification's failure was recorded, but the retry's invocation was
                # not sent (it failed): send it now.
                self.invoke(spec, job, job.attempts + 1)
                return "retried"
        if job.status is not JobStatus.STARTED or job.input_location != notification.input_location:
            # Settled already (a repeated notification), or about an earlier attempt.
            log.info("notification for job %s (%s) is stale", job.job_id, job.status.value)
            return "stale"
        if job.cancel_requested:
            # An inference cannot be stopped; its outcome is dropped as the job's was asked.
            revoke_running(self.store, job.job_id, job.attempts)
            return "revoked"
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
                result = self._output(notification.output_location or job.output_location)
            except PermanentFailure as exc:  # not JSON, too large, NaN: no retry reads it
                return self._settle(attempt.failed(exc), spec, job)
            return self._settle(attempt.succeeded(result), spec, job)
        return self._settle(attempt.failed(self._failure(notification, job)), spec, job)

    def input_location(self, job_id: str, attempt: int) -> str:
        """Where attempt `attempt` of a job keeps its request."""
        return f"s3://{self.settings.bucket_name()}/jobs/{job_id}/sagemaker/{attempt}/input.json"

    def _started(self, job_id: str, attempt: int, fields: dict[str, str | None]) -> Job:
        """Record attempt `attempt` as sent to SageMaker, with `fields` (those not None)."""
        now = utcnow()
        sets: dict[str, Any] = {"attempts": {"N": str(attempt)}, "started_at": timestamp(now)}
        sets.update({name: {"S": value} for name, value in fields.items() if value})
        return self.store.move(
            job_id,
            JobStatus.STARTED,
            attempts=attempt - 1,
            sources=frozenset({JobStatus.PENDING, JobStatus.RETRY}),
            sets=sets,
            removes=("next_attempt_at", "lease_expires_at"),
            now=now,
        )

    def _record_started(self, job: Job, notification: Notification, attempt: int) -> Job:
        """A job invoked whose STARTED was never recorded (the store failed just then)."""
        try:
            return self._started(
                job.job_id,
                attempt,
                {
                    "input_location": notification.input_location,
                    "output_location": notification.output_location,
                    "failure_location": notification.failure_location,
                },
            )
        except JobStateConflict as exc:
            return exc.current or job

    def _settle(self, outcome: Outcome, spec: TaskSpec, job: Job) -> str:
        if outcome.retry_in_s is not None:
            # SageMaker queues invocations itself: the retry goes now, not after a backoff.
            retried = self.store.get(job.job_id)
            if retried.status is not JobStatus.RETRY:
                return "stale"  # cancelled meanwhile
            self.invoke(spec, retried, outcome.attempt + 1)
            return "retried"
        if outcome.status is JobStatus.FAILURE:
            metrics.count("SageMakerFailures", spec.name, spec.lane)
        return outcome.status.value.lower() if outcome.status else "stale"

    def _output(self, location: str | None) -> Any:
        if not location:
            raise OutputUnreadable("the notification names no output location")
        body = self._read(location)
        result = None
        if len(body) <= self.settings.claim_check_bytes:
            try:
                result = json.loads(body)
            except ValueError:
                raise OutputUnreadable(f"the output at {location} is not JSON") from None
        if not claims.fits(self.settings, result, body):
            # It is in S3 already: the record keeps a claim on it where it is, and a client
            # gets a presigned URL (offload.claims), whatever its content type.
            return claims.Claim(location, len(body), hashlib.sha256(body).hexdigest()).as_json()
        return to_json(result, self.settings.max_result_bytes)  # NaN, say, fails the job

    def _failure(self, notification: Notification, job: Job) -> InferenceFailed:
        reason = notification.failure_reason or "SageMaker reported a failed invocation"
        location = notification.failure_location or job.failure_location
        detail = ""
        if location:
            try:
                detail = self._read(location)[:_FAILURE_DETAIL_BYTES].decode(errors="replace")
            except Exception as exc:  # the reason alone still says what happened
                log.info("failure object of job %s not read: %s", job.job_id, exc)
        return InferenceFailed(f"{reason}: {detail}" if detail else reason)

    def _read(self, location: str) -> bytes:
        bucket, key = aws.split_s3_uri(location)
        with aws.unavailable_as("S3"):
            body: bytes = aws.s3(self.settings).get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

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
                    counts[self._sweep_one(job, now, stale_after_s)] += 1
                except AwsUnavailable as exc:
                    log.warning("sweep: job %s left for the next round: %s", job.job_id, exc)
                    counts["unavailable"] += 1
                except JobStateConflict:
                    counts["raced"] += 1  # its notification came meanwhile
                except Exception:
                    # One job that cannot be resolved (its task renamed away, an endpoint
                    # deleted) must not stop the sweep for every job behind it.
                    log.exception("sweep: job %s could not be resolved", job.job_id)
                    counts["error"] += 1
        if counts:
            log.info("sagemaker sweep: %s", dict(counts))
        return dict(counts)

    def _sweep_one(self, job: Job, now: datetime, stale_after_s: float) -> str:
        spec = self.catalog.get(job.task)
        if job.status in (JobStatus.PENDING, JobStatus.RETRY):
            # Never sent (the submit or the retry stopped half way): send it now.
            self.invoke(spec, job, job.attempts + 1)
            return "invoked"
        if job.status is not JobStatus.STARTED:
            return "stale"
        if self.object_exists(job.output_location):
            return self.complete(
                Notification(
                    job.job_id, "Completed", job.input_location, job.output_location, None, None
                )
            )
        if self.object_exists(job.failure_location):
            reason = "SageMaker wrote a failure object; its notification was lost"
            return self.complete(self._failed(job, reason))
        started = job.started_at or job.updated_at
        waited = (now - started).total_seconds()
        # It may queue for its TTL, then run for its time limit, before anything is written.
        if waited < self.settings.sagemaker_request_ttl_s + spec.timeout_s + stale_after_s:
            return "waiting"
        reason = f"no notification, output or failure {waited:.0f} s after the invocation"
        return self.complete(self._failed(job, reason))

    def _failed(self, job: Job, reason: str) -> Notification:
        return Notification(
            job.job_id, "Failed", job.input_location, None, job.failure_location, reason
        )

    def object_exists(self, location: str | None) -> bool:
        """Whether an `s3://` object exists (an output or failure SageMaker wrote)."""
        if not location:
            return False
        bucket, key = aws.split_s3_uri(location)
        with aws.unavailable_as("S3"):
            try:
                aws.s3(self.settings).head_object(Bucket=bucket, Key=key)
            except Exception as exc:
                if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True
