"""What AWS would deliver to the local stack that moto does not: SageMaker's notifications,
the completions queue's event source mapping, and the sweep's schedule.

moto's `invoke_endpoint_async` writes a canned output object but posts no notification, and
moto runs no Lambda event sources or schedules. So, in `offload dev` and the e2e tests, one
thread here:

- posts, for each sagemaker job whose invocation has an output object, the notification
  SageMaker would post to the success topic (its documented shape); SNS then delivers it to
  the completions queue, as on AWS. For an endpoint it has a local model of (`models`:
  the `llm` endpoint answers like a TGI container, extractively), it first replaces moto's
  canned output with that model's answer to the stored input;
- polls the completions queue and hands its messages to `functions.completions` in SQS
  event batches, deleting those the handler did not report as failed (a failed one returns
  after its visibility timeout, and goes to the DLQ after five tries, as on AWS);
- runs the sweep every `sweep_every_s`;
- fires the periodic jobs' schedules declared in template.yaml (their `rate(...)`
  expressions; `cron(...)` ones are not run locally), as EventBridge Scheduler would.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.completions.main import make_handler
from functions.scheduler.main import run_sweep, submit_scheduled
from infra.template import load_template
from offload.aws import clients
from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import Job, JobStatus
from offload.runtime.sagemaker_lane import SageMakerLane
from offload.settings import Settings

log = logging.getLogger(__name__)


_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


@dataclass(frozen=True)
class Schedule:
    """A periodic job declared in template.yaml: what it submits, and how often."""

    name: str
    every_s: float
    input: str


def schedules(template: dict[str, Any] | None = None) -> list[Schedule]:
    """The template's EventBridge Scheduler schedules with a rate the local stack can run."""
    template = template if template is not None else load_template()
    found = []
    for logical_id, resource in template["Resources"].items():
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event_id, event in events.items():
            if event.get("Type") != "ScheduleV2":
                continue
            props = event["Properties"]
            rate = _RATE.fullmatch(str(props["ScheduleExpression"]))
            if rate is None:
                log.info(
                    "local events: %s.%s is not a rate(); not run locally", logical_id, event_id
                )
                continue
            every_s = int(rate.group(1)) * _UNIT_S[rate.group(2).rstrip("s")]
            found.append(Schedule(f"{logical_id}.{event_id}", every_s, str(props["Input"])))
    return found


def success_notification(job: Job, endpoint: str) -> dict[str, Any]:
    """SageMaker's notification of a completed async inference, as its docs show it."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "awsRegion": "us-east-1",
        "eventTime": now,
        "receivedTime": now,
        "invocationStatus": "Completed",
        "requestParameters": {
            "contentType": "application/json",
            "endpointName": endpoint,
            "inputLocation": job.input_location,
        },
        "responseParameters": {
            "contentType": "application/json",
            "outputLocation": job.output_location,
        },
        "inferenceId": job.job_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }


class LocalEvents:
    """The thread that plays SageMaker's notifier, Lambda's SQS poller and the scheduler.

    :param settings: the local stack's settings.
    :param catalog: the tasks (the completions handler settles by their policies).
    :param interval_s: how often it looks for work.
    :param sweep_every_s: how often the sweep runs.
    :param models: by endpoint (as tasks name it), what it answers to a request.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        interval_s: float = 0.5,
        sweep_every_s: float = 60.0,
        models: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = JobStore(settings)
        self.lane = SageMakerLane(settings, self.store, catalog)
        self.handler = make_handler(self.lane)
        self.interval_s = interval_s
        self.sweep_every_s = sweep_every_s
        self.models = dict(models or {})
        self.schedules = schedules()
        self._fired = {schedule.name: time.monotonic() for schedule in self.schedules}
        self._notified: set[str] = set()  # input locations already notified
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="offload-local-events", daemon=True)

    def start(self) -> LocalEvents:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.wait(self.interval_s):
            for step in (self.notify, self.deliver):
                try:
                    step()
                except Exception:
                    log.exception("local events: %s failed; trying again", step.__name__)
            if time.monotonic() - last_sweep >= self.sweep_every_s:
                last_sweep = time.monotonic()
                try:
                    run_sweep(self.store, self.lane, self.settings)
                except Exception:
                    log.exception("local events: the sweep failed; trying again")
            for schedule in self.schedules:
                try:
                    self.fire_if_due(schedule)
                except Exception:
                    log.exception("local events: schedule %s failed", schedule.name)

    def fire_if_due(self, schedule: Schedule, *, now: float | None = None) -> dict[str, Any] | None:
        """Submit a schedule's job if its period has passed since it last fired."""
        now = time.monotonic() if now is None else now
        if now - self._fired[schedule.name] < schedule.every_s:
            return None
        self._fired[schedule.name] = now
        return self.fire(schedule)

    def fire(self, schedule: Schedule) -> dict[str, Any]:
        """What the schedule's target receives, with its scheduled time filled in."""
        scheduled = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = json.loads(schedule.input.replace(SCHEDULED_TIME, scheduled))
        return submit_scheduled(event, self.store, self.lane)

    def notify(self) -> int:
        """Post the notifications of finished invocations; how many."""
        posted = 0
        soon = datetime.now(UTC) + timedelta(seconds=1)
        in_flight = self.store.in_flight("sagemaker", soon)
        # Forget the jobs that have ended: the set stays as small as the work in flight.
        self._notified &= {job.input_location for job in in_flight if job.input_location}
        for job in in_flight:
            if job.status is not JobStatus.STARTED or not job.input_location:
                continue
            if job.input_location in self._notified or not self.lane.invoker.object_exists(
                job.output_location
            ):
                continue
            spec = self.lane.catalog.get(job.task)
            model = self.models.get(spec.endpoint or "")
            if model is not None:
                self._answer(job, model)
            message = success_notification(job, self.lane.invoker.endpoint_name(spec))
            with clients.unavailable_as("SNS"):
                clients.sns(self.settings).publish(
                    TopicArn=self.settings.sagemaker_topic_arn("success"),
                    Message=json.dumps(message),
                )
            self._notified.add(job.input_location)
            posted += 1
        return posted

    def _answer(self, job: Job, model: Callable[[Any], Any]) -> None:
        """Write the model's answer to the job's input as its output object."""
        assert job.input_location is not None and job.output_location is not None
        s3 = clients.s3(self.settings)
        bucket, key = clients.split_s3_uri(job.input_location)
        with clients.unavailable_as("S3"):
            request = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        bucket, key = clients.split_s3_uri(job.output_location)
        with clients.unavailable_as("S3"):
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=json.dumps(model(request)).encode(),
                ContentType="application/json",
            )

    def deliver(self) -> int:
        """One SQS event batch from the completions queue to the handler; its size."""
        url = self.settings.completions_queue_url()
        sqs = clients.sqs(self.settings)
        with clients.unavailable_as("SQS"):
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
            ).get("Messages", [])
        if not messages:
            return 0
        queue_arn = f"arn:aws:sqs:{self.settings.aws_region}:{self.settings.aws_account_id}:"
        queue_arn += url.rsplit("/", 1)[-1]
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": self.settings.aws_region,
            }
            for m in messages
        ]
        response = self.handler({"Records": records}, None)
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                with clients.unavailable_as("SQS"):
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)
