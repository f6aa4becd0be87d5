"""The sagemaker lane: invoke_endpoint_async at submit, SageMaker's SNS notifications (through
SQS, as the completions function receives them) settle the job."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

import tasks
from functions.api.main import create_app
from functions.completions import main as completions
from offload.aws.store import JobStore
from offload.errors import AwsUnavailable
from offload.runtime.sagemaker_lane import SageMakerLane
from offload.settings import Settings
from tests.integration import jobs

SQS_EVENT = Path(__file__).parents[3] / "fixtures" / "sqs" / "receive-message.json"


@pytest.fixture
def client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    lane = SageMakerLane(settings, JobStore(settings), tasks.catalog())
    monkeypatch.setattr(completions, "lane", lane)
    with TestClient(create_app(settings)) as client:
        yield client


def notification(job: Any, status: str = "Completed", reason: str | None = None) -> str:
    """SageMaker's message for the job's current attempt, as its docs show it."""
    message: dict[str, Any] = {
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-21T09:00:01.000Z",
        "receivedTime": "2026-11-21T09:00:00.000Z",
        "invocationStatus": status,
        "requestParameters": {
            "contentType": "application/json",
            "endpointName": "offload-llm",
            "inputLocation": job.input_location,
        },
        "responseParameters": {"contentType": "application/json"},
        "inferenceId": job.job_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if status == "Completed":
        message["responseParameters"]["outputLocation"] = job.output_location
    else:
        message["failureReason"] = reason
        message["responseParameters"]["failureLocation"] = job.failure_location
    return json.dumps(message)


def sns_envelope(message: str, topic: str = "offload-sagemaker-success") -> str:
    """What SQS holds for an SNS message (no raw delivery)."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": f"arn:aws:sns:us-east-1:123456789012:{topic}",
            "Message": message,
            "Timestamp": "2026-11-21T09:00:01.100Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "EXAMPLE",
            "UnsubscribeURL": "EXAMPLE",
        }
    )


def deliver(*bodies: str) -> dict[str, Any]:
    """The completions function's answer to an SQS batch of these bodies."""
    template = json.loads(SQS_EVENT.read_text())["Records"][0]
    records = [{**template, "messageId": f"m{i}", "body": body} for i, body in enumerate(bodies)]
    response: dict[str, Any] = completions.handler({"Records": records}, None)
    return response


def submit(client: TestClient, prompt: str = "Say hi") -> str:
    response = client.post("/jobs", json={"task": "llm.generate", "payload": {"prompt": prompt}})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def read(settings: Settings, location: str) -> bytes:
    bucket, _, key = location.removeprefix("s3://").partition("/")
    body: bytes = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def test_submit_invokes_the_endpoint_with_the_request_stored_under_the_job(
    client: TestClient, settings: Settings
) -> None:
    job_id = submit(client, "Tell me a joke")
    view = client.get(f"/jobs/{job_id}").json()
    assert (view["status"], view["lane"], view["attempts"]) == ("STARTED", "sagemaker", 1)
    job = JobStore(settings).get(job_id)
    assert job.input_location == (
        f"s3://{settings.bucket_name()}/jobs/{job_id}/sagemaker/1/input.json"
    )
    assert json.loads(read(settings, job.input_location)) == {
        "inputs": "Tell me a joke",
        "parameters": {"max_new_tokens": 256, "return_full_text": False, "do_sample": False},
    }
    assert job.output_location and job.failure_location


def test_a_success_notification_stores_the_endpoint_output(
    client: TestClient, settings: Settings
) -> None:
    job = JobStore(settings).get(submit(client))
    assert deliver(sns_envelope(notification(job))) == {"batchItemFailures": []}
    view = client.get(f"/jobs/{job.job_id}").json()
    assert view["status"] == "SUCCESS"
    assert view["result"] == json.loads(read(settings, job.output_location or ""))
    # The same notification again (SNS and SQS deliver at least once) changes nothing.
    assert deliver(sns_envelope(notification(job))) == {"batchItemFailures": []}
    assert client.get(f"/jobs/{job.job_id}").json()["status"] == "SUCCESS"


def test_a_failure_is_retried_by_policy_then_fails_with_the_reason(
    client: TestClient, settings: Settings
) -> None:
    store = JobStore(settings)
    first = store.get(submit(client))
    deliver(sns_envelope(notification(first, "Failed", "ModelError: out of memory"), "error"))
    second = store.get(first.job_id)
    assert (second.status.value, second.attempts) == ("STARTED", 2)  # invoked again at once
    assert second.input_location and second.input_location.endswith("/sagemaker/2/input.json")
    # A late copy of attempt 1's notification does not settle attempt 2.
    deliver(sns_envelope(notification(first, "Failed", "ModelError: out of memory"), "error"))
    assert store.get(first.job_id).status.value == "STARTED"
    deliver(sns_envelope(notification(second, "Failed", "ModelError: still no memory"), "error"))
    view = client.get(f"/jobs/{first.job_id}").json()
    assert (view["status"], view["attempts"]) == ("FAILURE", 2)
    assert view["error"]["type"] == "InferenceFailed"
    assert view["error"]["message"].startswith("ModelError: still no memory")


def test_a_bad_message_fails_alone_and_comes_back(client: TestClient, settings: Settings) -> None:
    job = JobStore(settings).get(submit(client))
    response = deliver("not json at all", sns_envelope(notification(job)))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert client.get(f"/jobs/{job.job_id}").json()["status"] == "SUCCESS"


def test_a_notification_for_an_unknown_job_is_dropped(client: TestClient) -> None:
    stranger = json.dumps(
        {"invocationStatus": "Completed", "inferenceId": str(uuid.uuid4()), "eventVersion": "1.0"}
    )
    assert deliver(sns_envelope(stranger)) == {"batchItemFailures": []}


def test_a_job_cancelled_while_it_infers_ends_revoked_at_once(
    client: TestClient, settings: Settings
) -> None:
    job = JobStore(settings).get(submit(client))
    # An inference cannot be stopped, and no worker holds the job: it ends now.
    cancelled = client.post(f"/jobs/{job.job_id}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (202, "REVOKED")
    # Its output, when it comes, is dropped.
    assert deliver(sns_envelope(notification(job))) == {"batchItemFailures": []}
    assert client.get(f"/jobs/{job.job_id}").json()["status"] == "REVOKED"


# -- the sweep: notifications that never came ---------------------------------------------


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_the_sweep_finds_the_output_of_a_lost_success_notification(
    client: TestClient, settings: Settings
) -> None:
    job_id = submit(client)
    lane = completions.lane
    assert lane.sweep(600) == {}  # not stale yet: left to its notification
    assert lane.sweep(0, now=later(1)) == {"success": 1}
    view = client.get(f"/jobs/{job_id}").json()
    assert view["status"] == "SUCCESS" and view["result"] is not None
    # Ended jobs leave the sweep's index.
    assert JobStore(settings).in_flight("sagemaker", later(3600)) == []


def fail_inference(settings: Settings, job_id: str, detail: bytes) -> None:
    """Make the job's current invocation look failed: no output, a failure object."""
    job = JobStore(settings).get(job_id)
    s3 = boto3.client("s3")
    out_bucket, _, out_key = (job.output_location or "").removeprefix("s3://").partition("/")
    s3.delete_object(Bucket=out_bucket, Key=out_key)
    fail_bucket, _, fail_key = (job.failure_location or "").removeprefix("s3://").partition("/")
    s3.put_object(Bucket=fail_bucket, Key=fail_key, Body=detail)


def test_the_sweep_fails_a_lost_failure_by_its_failure_object(
    client: TestClient, settings: Settings
) -> None:
    job_id = submit(client)
    fail_inference(settings, job_id, b"CUDA out of memory")
    assert completions.lane.sweep(0, now=later(1)) == {"retried": 1}  # llm.generate: 2 tries
    # moto writes its canned output again for the new invocation: fail that one too.
    fail_inference(settings, job_id, b"CUDA out of memory, again")
    assert completions.lane.sweep(0, now=later(2)) == {"failure": 1}
    view = client.get(f"/jobs/{job_id}").json()
    assert (view["status"], view["attempts"]) == ("FAILURE", 2)
    assert "CUDA out of memory, again" in view["error"]["message"]


def test_the_sweep_gives_up_on_an_attempt_past_its_time_limit_with_nothing_written(
    client: TestClient, settings: Settings
) -> None:
    job = JobStore(settings).get(submit(client))
    bucket, _, key = (job.output_location or "").removeprefix("s3://").partition("/")
    boto3.client("s3").delete_object(Bucket=bucket, Key=key)
    lane = completions.lane
    # It may queue for its request TTL (3600 s), then run for 900 s, before writing anything.
    assert lane.sweep(0, now=later(4000)) == {"waiting": 1}
    assert lane.sweep(0, now=later(4501)) == {"retried": 1}
    error = JobStore(settings).get(job.job_id).error
    assert error is not None and "no notification, output or failure" in error.message


def test_the_sweep_sends_a_job_whose_submit_never_reached_sagemaker(settings: Settings) -> None:
    # A PENDING job: its API process died between storing it and invoking the endpoint.
    store = JobStore(settings)
    job_id = jobs.pending(store, "llm.generate", lane="sagemaker", payload={"prompt": "hi"})
    lane = SageMakerLane(settings, store, tasks.catalog())
    assert lane.sweep(0, now=later(1)) == {"invoked": 1}
    started = store.get(job_id)
    assert (started.status.value, started.attempts) == ("STARTED", 1)
    assert started.input_location is not None


def put_output(job: Any, body: bytes) -> None:
    bucket, _, key = (job.output_location or "").removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def test_an_output_no_job_can_hold_fails_the_job_instead_of_the_notification(
    client: TestClient, settings: Settings
) -> None:
    job = JobStore(settings).get(submit(client))
    put_output(job, b'{"score": NaN}')  # JSON to Python, never to a job record
    assert deliver(sns_envelope(notification(job))) == {"batchItemFailures": []}
    view = client.get(f"/jobs/{job.job_id}").json()
    assert (view["status"], view["attempts"]) == ("FAILURE", 1)
    assert view["error"]["type"] == "ResultNotSerializable"


def test_a_retry_whose_invocation_failed_is_sent_when_the_notification_returns(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(settings)
    job = store.get(submit(client))
    lane = completions.lane.invoker
    real_invoke = lane.invoke

    def outage(*args: Any) -> Any:
        raise AwsUnavailable("SageMaker", "throttled, as the test asks")

    monkeypatch.setattr(lane, "invoke", outage)
    failed = sns_envelope(notification(job, "Failed", "ModelError: busy"), "error")
    # (With a second, healthy record: a batch whose every record fails raises instead.)
    stranger = json.dumps({"invocationStatus": "Completed", "inferenceId": str(uuid.uuid4())})
    assert deliver(failed, sns_envelope(stranger)) == {
        "batchItemFailures": [{"itemIdentifier": "m0"}]
    }
    assert store.get(job.job_id).status.value == "RETRY"  # recorded, not yet sent
    monkeypatch.setattr(lane, "invoke", real_invoke)
    assert deliver(failed) == {"batchItemFailures": []}  # SQS delivers it again
    retried = store.get(job.job_id)
    assert (retried.status.value, retried.attempts) == ("STARTED", 2)


def test_one_job_the_sweep_cannot_resolve_does_not_stop_it(
    client: TestClient, settings: Settings
) -> None:
    store = JobStore(settings)
    jobs.pending(store, "renamed.away", lane="sagemaker", payload={})  # its task is gone
    job_id = submit(client)
    assert completions.lane.sweep(0, now=later(1)) == {"error": 1, "success": 1}
    assert store.get(job_id).status.value == "SUCCESS"
