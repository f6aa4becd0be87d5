"""The sagemaker lane: jobs run on a SageMaker asynchronous inference endpoint.

Dispatch stores the request the task builds under the job's prefix
(`jobs/<id>/sagemaker/<attempt>/input.json`) and calls `invoke_endpoint_async` with
`InferenceId` = the job id; the job is STARTED with the input, output and failure locations.
SageMaker then posts a notification to its success or error SNS topic, which an SQS queue
hands to the completions function (`functions/completions`); the runtime's `SageMakerLane`
(offload.runtime.sagemaker_lane) settles the job from it, reading the output or failure
object through this module. A notification is matched to an attempt by its input location,
so a late or repeated one never settles a later attempt.

Only boto3's `sagemaker-runtime` client: the sagemaker SDK is never imported at run time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from offload.aws import claims, clients, transitions
from offload.aws.job_services import AwsJobServices
from offload.aws.store import JobStore
from offload.core.catalog import TaskSpec
from offload.core.context import JobContext
from offload.core.holders import Endpoint
from offload.core.model import Job
from offload.core.results import to_json
from offload.errors import AwsUnavailable, JobStateConflict, PermanentFailure
from offload.settings import Settings

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


class SageMakerInvoker:
    """Invokes endpoints for jobs, and reads what SageMaker wrote back (the runtime's
    `SageMakerLane` settles jobs from it).

    :param settings: names the bucket and prefixes endpoint names with the stack's.
    :param store: the job store.
    """

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store

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
            services=AwsJobServices(self.store),
            caller=job.caller,
        )
        payload = spec.parse(
            claims.resolve(self.settings, job.payload, owner=job.job_id), lane=spec.lane
        )
        request = to_json(spec.call(payload, context), 6 * 1024 * 1024)
        bucket = self.settings.bucket_name()
        key = self.input_location(job.job_id, attempt).removeprefix(f"s3://{bucket}/")
        with clients.unavailable_as("S3"):
            clients.s3(self.settings).put_object(
                Bucket=bucket, Key=key, Body=json.dumps(request).encode(), ContentType=CONTENT_TYPE
            )
        input_location = f"s3://{bucket}/{key}"
        with clients.unavailable_as("SageMaker"):
            response = clients.sagemaker_runtime(self.settings).invoke_endpoint_async(
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
            return self.store.apply(
                transitions.record_invoked(
                    job.job_id,
                    attempt,
                    {
                        "input_location": input_location,
                        "output_location": response["OutputLocation"],
                        "failure_location": response.get("FailureLocation"),
                    },
                    Endpoint(self.endpoint_name(spec)),
                )
            )
        except AwsUnavailable as exc:
            # SageMaker has it: the job must not be discarded as never sent. Its
            # notification finds it PENDING and settles it all the same.
            raise InvokedNotRecorded(exc.service, str(exc)) from exc

    def input_location(self, job_id: str, attempt: int) -> str:
        """Where attempt `attempt` of a job keeps its request."""
        return f"s3://{self.settings.bucket_name()}/jobs/{job_id}/sagemaker/{attempt}/input.json"

    def record_started(self, job: Job, notification: Notification, attempt: int) -> Job:
        """A job invoked whose STARTED was never recorded (the store failed just then)."""
        try:
            return self.store.apply(
                transitions.record_invoked(
                    job.job_id,
                    attempt,
                    {
                        "input_location": notification.input_location,
                        "output_location": notification.output_location,
                        "failure_location": notification.failure_location,
                    },
                )
            )
        except JobStateConflict as exc:
            return exc.current or job

    def output(self, location: str | None) -> Any:
        """The result of an endpoint's output object, as a job keeps it."""
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
            # gets a presigned URL (offload.aws.claims), whatever its content type.
            return claims.Claim(location, len(body), hashlib.sha256(body).hexdigest()).as_json()
        return to_json(result, self.settings.max_result_bytes)  # NaN, say, fails the job

    def failure(self, notification: Notification, job: Job) -> InferenceFailed:
        """The error of a failed invocation: SageMaker's reason and its failure object."""
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
        bucket, key = clients.split_s3_uri(location)
        with clients.unavailable_as("S3"):
            body: bytes = (
                clients.s3(self.settings).get_object(Bucket=bucket, Key=key)["Body"].read()
            )
        return body

    def object_exists(self, location: str | None) -> bool:
        """Whether an `s3://` object exists (an output or failure SageMaker wrote)."""
        if not location:
            return False
        bucket, key = clients.split_s3_uri(location)
        with clients.unavailable_as("S3"):
            try:
                clients.s3(self.settings).head_object(Bucket=bucket, Key=key)
            except Exception as exc:
                if clients.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True
