from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from functions.api.main import create_app
from infra.local.dev import free_port
from offload.aws import celery_protocol
from offload.fastapi import JobsDep
from offload.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # As a context manager, the client keeps one event loop: inline jobs run on it after
    # each response, as under uvicorn.
    with TestClient(create_app(settings)) as client:
        yield client


def finished(client: TestClient, job_id: str) -> dict[str, Any]:
    """Long-poll until the job ends."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}?wait=5").json()
        if job["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return job
    raise AssertionError(f"job {job_id} did not finish")


def submit(client: TestClient, task: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = client.post("/jobs", json={"task": task, "payload": payload, **extra})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/jobs/{response.json()['job_id']}"
    body: dict[str, Any] = response.json()
    return body


def test_inline_job_runs_after_the_response_and_succeeds(client: TestClient) -> None:
    job = submit(client, "diag.echo", {"hello": "world"})
    assert job["status"] == "PENDING" and job["lane"] == "inline"
    done = finished(client, job["job_id"])
    assert done["status"] == "SUCCESS"
    assert done["result"] == {"hello": "world"}
    assert done["attempts"] == 1 and done["finished_at"] is not None


def test_queue_job_is_sent_to_its_lane_as_a_celery_message(
    client: TestClient, drain: Callable[[str], list[str]]
) -> None:
    job = submit(client, "diag.sleep", {"seconds": 1})
    assert job["lane"] == "cpu" and job["status"] == "PENDING"
    (body,) = drain("cpu")
    message = celery_protocol.decode(body)
    assert message["task"] == "diag.sleep" and message["id"] == job["job_id"]
    assert message["kwargs"]["attempt"] == 1
    assert message["kwargs"]["payload"]["seconds"] == 1.0
    assert message["routing_key"] == "cpu"
    assert drain("gpu") == []


def test_unknown_task_is_422_naming_the_task(client: TestClient) -> None:
    response = client.post("/jobs", json={"task": "no.such", "payload": {}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "unknown_task"
    assert "no.such" in error["message"] and "diag.echo" in error["message"]


def test_invalid_payload_is_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/jobs", json={"task": "diag.nap", "payload": {"seconds": 99}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_payload"
    assert error["details"][0]["field"] == "payload.seconds"
    assert "10" in error["details"][0]["message"]


def test_malformed_request_is_422_in_the_same_shape(client: TestClient) -> None:
    response = client.post("/jobs", json={"payload": {}, "surprise": 1})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert {d["field"] for d in error["details"]} == {"task", "surprise"}


def test_a_payload_over_the_maximum_is_413_with_the_limit(client: TestClient) -> None:
    limit = Settings().max_payload_bytes
    blob = "x" * limit  # its JSON is a few bytes more than the limit
    response = client.post(
        "/jobs",
        json={
            "task": "audit.record",
            "payload": {"event": "e", "subject": "s", "data": {"b": blob}},
        },
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "payload_too_large" and str(limit) in error["message"]
    assert error["details"] == {"limit_bytes": limit}
    assert client.get("/jobs").json()["jobs"] == []


def test_unknown_job_is_404(client: TestClient) -> None:
    response = client.get("/jobs/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "job_not_found"


def test_absurd_job_id_is_404_not_a_crash(client: TestClient) -> None:
    response = client.get("/jobs/" + "x" * 5000)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "job_not_found"


def test_wait_is_bounded(client: TestClient) -> None:
    job = submit(client, "diag.echo", {})
    response = client.get(f"/jobs/{job['job_id']}?wait=21")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "wait"


def test_wait_on_a_finished_job_answers_at_once(client: TestClient) -> None:
    job = finished(client, submit(client, "diag.echo", {})["job_id"])
    started = time.monotonic()
    response = client.get(f"/jobs/{job['job_id']}?wait=20")
    assert response.json()["status"] == "SUCCESS"
    assert time.monotonic() - started < 10  # not the full 20 s: nothing more can change


def test_list_is_newest_first_and_paginated(client: TestClient) -> None:
    ids = [submit(client, "diag.echo", {"n": n})["job_id"] for n in range(5)]
    first = client.get("/jobs?limit=2").json()
    assert [j["job_id"] for j in first["jobs"]] == ids[::-1][:2]
    rest = client.get(f"/jobs?limit=10&cursor={first['next_cursor']}").json()
    assert [j["job_id"] for j in rest["jobs"]] == ids[::-1][2:]
    assert rest["next_cursor"] is None
    assert client.get("/jobs?cursor=nonsense").status_code == 422
    assert client.get("/jobs?status=BOGUS").status_code == 422


def test_idempotency_key_returns_the_same_job(client: TestClient) -> None:
    first = submit(client, "diag.echo", {"a": 1}, idempotency_key="order-42")
    again = submit(client, "diag.echo", {"a": 1}, idempotency_key="order-42")
    assert again["job_id"] == first["job_id"]
    clash = client.post(
        "/jobs", json={"task": "diag.echo", "payload": {"a": 2}, "idempotency_key": "order-42"}
    )
    assert clash.status_code == 409
    assert clash.json()["error"]["type"] == "conflict"


def test_tasks_lists_the_catalog(client: TestClient) -> None:
    tasks = {t["name"]: t for t in client.get("/tasks").json()["tasks"]}
    assert tasks["diag.sleep"]["lane"] == "cpu"
    assert tasks["embeddings.embed"]["lane"] == "gpu"
    assert tasks["diag.nap"]["payload_schema"]["properties"]["seconds"]["maximum"] == 10
    assert tasks["diag.flaky"]["max_attempts"] == 5


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_unreachable_aws_is_503_and_leaves_no_job() -> None:
    dead = Settings(aws_endpoint_url=f"http://127.0.0.1:{free_port()}", aws_timeout_s=0.5)
    client = TestClient(create_app(dead))
    response = client.post("/jobs", json={"task": "diag.echo", "payload": {}})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "service_unavailable"
    assert response.headers["retry-after"]
    assert client.get("/jobs/00000000-0000-0000-0000-000000000000").status_code == 503


def test_failed_dispatch_leaves_no_pending_job(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQS fails (the queue is gone) while DynamoDB works: the job must not stay PENDING
    import boto3

    boto3.client("sqs").delete_queue(QueueUrl=settings.queue_url("cpu"))
    client = TestClient(create_app(settings))
    response = client.post("/jobs", json={"task": "diag.sleep", "payload": {"seconds": 1}})
    assert response.status_code == 503, response.text
    assert client.get("/jobs").json()["jobs"] == []


def test_documents_route_answers_with_both_jobs(
    client: TestClient, settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    response = client.post("/documents", json={"title": "Notes", "text": "one\n\ntwo"})
    assert response.status_code == 202, response.text
    body = response.json()
    audit = finished(client, body["jobs"]["audit"])
    assert audit["status"] == "SUCCESS" and audit["task"] == "audit.record"
    (message,) = drain("gpu")
    decoded = celery_protocol.decode(message)
    assert decoded["id"] == body["jobs"]["embedding"]
    assert decoded["kwargs"]["payload"] == {"texts": ["one\n\ntwo"]}
    import boto3

    key = body["uri"].split("/", 3)[3]
    stored = boto3.client("s3").get_object(Bucket=settings.bucket_name(), Key=key)
    assert b"Notes" in stored["Body"].read()


def test_any_failed_send_leaves_no_pending_job(settings: Settings) -> None:
    from botocore.exceptions import ClientError

    app = create_app(settings)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SendMessage")

    app.state.offload.publisher.send = refuse
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/jobs", json={"task": "diag.sleep", "payload": {"seconds": 1}})
        assert response.status_code == 500
        assert response.json()["error"] == {
            "type": "internal_error",
            "message": "internal error; it has been logged",
            "details": None,
        }
        assert client.get("/jobs").json()["jobs"] == []


def test_inline_work_of_a_failing_route_still_runs(settings: Settings) -> None:
    app = create_app(settings)
    submitted: list[str] = []

    @app.post("/fails-after-submitting")
    async def fails(jobs: JobsDep) -> None:
        submitted.append((await jobs.submit("diag.echo", {"from": "failing route"})).job_id)
        raise HTTPException(status_code=409, detail="the route's own failure")

    with TestClient(app) as client:
        assert client.post("/fails-after-submitting").status_code == 409
        assert finished(client, submitted[0])["result"] == {"from": "failing route"}


def test_a_cursor_of_another_caller_is_refused(client: TestClient) -> None:
    import base64
    import json

    forged = {"job_id": "x", "caller": "someone-else", "created_at": "2026-01-01T00:00:00.000000Z"}
    cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
    response = client.get(f"/jobs?cursor={cursor}")
    assert response.status_code == 422
    assert "another caller" in response.json()["error"]["message"]


def test_an_idempotent_retry_repairs_a_job_whose_send_and_discard_both_failed(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    from offload.errors import AwsUnavailable

    app = create_app(settings)
    offload = app.state.offload
    real_send = offload.publisher.send

    def outage(*args: Any, **kwargs: Any) -> None:
        raise AwsUnavailable("SQS", "EndpointConnectionError")

    def discard_fails(job_id: str) -> None:
        raise AwsUnavailable("DynamoDB", "EndpointConnectionError")

    offload.publisher.send = outage
    offload.store.discard_pending = discard_fails
    request = {"task": "diag.sleep", "payload": {"seconds": 1}, "idempotency_key": "k-1"}
    with TestClient(app) as client:
        assert client.post("/jobs", json=request).status_code == 503
        (orphan,) = client.get("/jobs").json()["jobs"]  # the double fault left it PENDING
        offload.publisher.send = real_send
        retried = client.post("/jobs", json=request)
        assert retried.status_code == 202
        assert retried.json()["job_id"] == orphan["job_id"]
    (body,) = drain("cpu")
    assert celery_protocol.decode(body)["id"] == orphan["job_id"]


def test_a_keyless_submit_whose_create_landed_unanswered_leaves_no_orphan(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    from offload.errors import AwsUnavailable

    app = create_app(settings)
    offload = app.state.offload
    real_create = offload.store.create

    def landed_unanswered(job: Any) -> None:
        real_create(job)  # DynamoDB did it; every answer was lost
        raise AwsUnavailable("DynamoDB", "ConnectionClosedError")

    offload.store.create = landed_unanswered
    with TestClient(app) as client:
        response = client.post("/jobs", json={"task": "diag.sleep", "payload": {"seconds": 1}})
        assert response.status_code == 503
        # Its id was never told: the client's retry makes another job, so this one is gone.
        assert client.get("/jobs").json()["jobs"] == []
    assert drain("cpu") == []


def test_a_form_body_is_told_to_be_json(client: TestClient) -> None:
    # What `curl -d '{...}'` sends without -H 'content-type: application/json'.
    response = client.post(
        "/jobs",
        content=b'{"task": "diag.echo", "payload": {}}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    # A JSON body that is merely wrong keeps its plain message.
    response = client.post("/jobs", json={"payload": {}})
    assert response.status_code == 422
    assert "Content-Type" not in response.json()["error"]["message"]
