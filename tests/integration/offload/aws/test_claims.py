"""Claim check: large payloads and results travel through S3; and the in-flight quota."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from fastapi.testclient import TestClient

import tasks
from functions.api.main import create_app
from offload.aws import celery_protocol, claims
from offload.aws.queues import QueuePublisher
from offload.aws.store import JobStore
from offload.core.model import JobStatus, utcnow
from offload.errors import TooManyJobsInFlight
from offload.settings import Settings
from offload.submit.jobs import Jobs
from offload.submit.quotas import InFlightQuota
from tests.integration import jobs
from workers.runtime import Runtime

KIB = 1024


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def run_queued(settings: Settings, drain: Callable[[str], list[str]]) -> list[str]:
    """Run every job waiting on the cpu queue as a worker does, from its message."""
    runtime = Runtime(settings)
    ran = []
    for body in drain("cpu"):
        message = celery_protocol.decode(body)
        assert len(body) < 256 * KIB  # what SQS would take
        kwargs = message["kwargs"]
        spec = tasks.catalog().get(message["task"])
        runtime.execute(spec, message["id"], kwargs["payload"], kwargs["attempt"], "w/1")
        ran.append(message["id"])
    return ran


def s3_body(uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def test_a_large_payload_travels_as_a_claim_and_its_task_sees_it_whole(
    client: TestClient, settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    data = "é" + "x" * (300 * KIB)
    submitted = client.post("/jobs", json={"task": "diag.digest", "payload": {"data": data}})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    stored = JobStore(settings).get(job_id)
    claim = claims.claim_of(stored.payload)
    assert claim is not None and claim.uri.startswith(
        f"s3://{settings.bucket_name()}/jobs/{job_id}/"
    )
    assert json.loads(s3_body(claim.uri)) == {"data": data, "echo": False}

    assert run_queued(settings, drain) == [job_id]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "SUCCESS"
    assert job["result"] == {
        "bytes": len(data.encode()),
        "sha256": hashlib.sha256(data.encode()).hexdigest(),
    }
    assert job["result_download"] is None  # small results stay in the record


def test_a_large_result_is_read_back_through_a_presigned_url(
    client: TestClient, settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    data = "y" * (200 * KIB)
    payload = {"data": data, "echo": True}
    job_id = client.post("/jobs", json={"task": "diag.digest", "payload": payload}).json()["job_id"]
    run_queued(settings, drain)
    job = client.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["result"]) == ("SUCCESS", None)
    download = job["result_download"]
    url = urlsplit(download["url"])
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == [str(settings.result_url_ttl_s)]
    assert f"/jobs/{job_id}/result-" in url.path
    stored = JobStore(settings).get(job_id)
    claim = claims.claim_of(stored.result)
    assert claim is not None and download["bytes"] == claim.bytes
    assert json.loads(s3_body(claim.uri))["data"] == data
    # The list and the cancel answer show the same view.
    (listed,) = client.get("/jobs").json()["jobs"]
    assert listed["result"] is None and listed["result_download"]["bytes"] == claim.bytes


def test_a_result_over_the_maximum_fails_the_job(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    small = settings.model_copy(update={"max_result_bytes": 100 * KIB})
    with TestClient(create_app(small)) as client:
        payload = {"data": "z" * (120 * KIB), "echo": True}
        job_id = client.post("/jobs", json={"task": "diag.digest", "payload": payload}).json()[
            "job_id"
        ]
        run_queued(small, drain)
        job = client.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["attempts"], job["error"]["type"]) == (
        "FAILURE",
        1,
        "ResultTooLarge",
    )
    assert str(100 * KIB) in job["error"]["message"]


def test_a_claim_on_another_jobs_object_or_a_lost_one_fails_the_job(
    client: TestClient, settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    big = {"data": "q" * (100 * KIB)}
    first, second = (
        client.post("/jobs", json={"task": "diag.digest", "payload": big}).json()["job_id"]
        for _ in range(2)
    )
    drain("cpu")
    store = JobStore(settings)
    foreign = store.get(first).payload
    spec = tasks.catalog().get("diag.digest")
    outcome = Runtime(settings).execute(spec, second, foreign, 1, "w/1")
    assert outcome.status is JobStatus.FAILURE
    assert outcome.error is not None and outcome.error.type == "ClaimUnusable"
    assert "not job" in outcome.error.message

    claim = claims.claim_of(foreign)
    assert claim is not None
    bucket, _, key = claim.uri.removeprefix("s3://").partition("/")
    boto3.client("s3").delete_object(Bucket=bucket, Key=key)
    lost = Runtime(settings).execute(spec, first, foreign, 1, "w/1")
    assert lost.error is not None and "is gone" in lost.error.message


def test_an_idempotent_repeat_with_another_payload_leaves_the_first_ones_object(
    client: TestClient, settings: Settings
) -> None:
    def submit(data: str) -> int:
        body = {"task": "diag.digest", "payload": {"data": data}, "idempotency_key": "k1"}
        return client.post("/jobs", json=body).status_code

    assert submit("a" * (64 * KIB)) == 202
    assert submit("b" * (64 * KIB)) == 409
    job = next(iter(client.get("/jobs").json()["jobs"]))
    claim = claims.claim_of(JobStore(settings).get(job["job_id"]).payload)
    assert claim is not None and json.loads(s3_body(claim.uri))["data"][0] == "a"


def test_a_caller_over_its_in_flight_quota_gets_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_jobs_in_flight": 2})
    store = JobStore(limited)
    with TestClient(create_app(limited)) as client:

        def submit(key: str) -> tuple[int, dict[str, object], dict[str, str]]:
            body = {"task": "diag.sleep", "payload": {"seconds": 1}, "idempotency_key": key}
            response = client.post("/jobs", json=body)
            return response.status_code, response.json(), dict(response.headers)

        first, second = submit("one"), submit("two")
        assert (first[0], second[0]) == (202, 202)
        status, body, headers = submit("three")
        assert status == 429
        assert headers["retry-after"] == str(limited.quota_retry_after_s)
        error = body["error"]
        assert isinstance(error, dict) and error["type"] == "too_many_jobs"
        assert error["details"] == {"limit": 2} and "2 jobs" in str(error["message"])
        # A repeat of a job that exists is answered as usual, quota or not.
        assert submit("one")[1] == first[1]
        # Another caller has a quota of its own.
        assert store.count_in_flight("someone-else", 2) == 0
        # Once a job ends, there is room again.
        job_id = str(first[1]["job_id"])
        client.post(f"/jobs/{job_id}/cancel")
        assert store.get(job_id).status is JobStatus.REVOKED
        assert submit("three")[0] == 202


def test_data_shaped_like_a_claim_stays_data(client: TestClient, settings: Settings) -> None:
    # diag.echo returns its payload: a caller's forged claim on another job's object comes
    # back as the data it is, never as that object.
    victim = "00000000-0000-0000-0000-000000000000"
    forged = {
        "$claim": {
            "uri": f"s3://{settings.bucket_name()}/jobs/{victim}/result-0.json",
            "bytes": 2,
            "sha256": None,
        }
    }
    job_id = client.post("/jobs", json={"task": "diag.echo", "payload": forged}).json()["job_id"]
    job = client.get(f"/jobs/{job_id}", params={"wait": 5}).json()
    while job["status"] not in ("SUCCESS", "FAILURE"):
        job = client.get(f"/jobs/{job_id}", params={"wait": 5}).json()
    assert (job["status"], job["result"]) == ("SUCCESS", None)
    stored = JobStore(settings).get(job_id)
    for kept in (stored.payload, stored.result):
        claim = claims.claim_of(kept)
        assert claim is not None and f"/jobs/{job_id}/" in claim.uri
        assert json.loads(s3_body(claim.uri)) == forged
    assert f"/jobs/{job_id}/result-" in job["result_download"]["url"]


def test_a_caller_far_from_its_limit_is_not_counted_on_every_submit(settings: Settings) -> None:
    patient = settings.model_copy(update={"max_jobs_in_flight": 20, "quota_recount_s": 60})
    store = JobStore(patient)
    counts: list[int] = []
    count = store.count_in_flight

    def counted(caller: str, up_to: int) -> int:
        counts.append(count(caller, up_to))
        return counts[-1]

    store.count_in_flight = counted  # type: ignore[method-assign]
    quota = InFlightQuota(store)
    jobs_ = Jobs(tasks.catalog(), store, QueuePublisher(patient), lambda *a: None, quota=quota)
    for _ in range(20):
        asyncio.run(jobs_.submit("diag.sleep", {"seconds": 1}))
    # Counted once, then again on each submit from half the limit (10) on: exact near it.
    assert counts == [0, *range(10, 20)]
    with pytest.raises(TooManyJobsInFlight):
        asyncio.run(jobs_.submit("diag.sleep", {"seconds": 1}))


def test_a_job_that_never_ends_stops_counting_after_the_quota_window(settings: Settings) -> None:
    store = JobStore(settings)
    lost = jobs.new_job("diag.sleep", caller="alice")
    lost.created_at = lost.updated_at = utcnow() - timedelta(seconds=settings.quota_window_s + 60)
    store.create(lost)  # PENDING for good: its message was lost
    jobs.pending(store, "diag.sleep", caller="alice")
    assert store.count_in_flight("alice", 10) == 1
