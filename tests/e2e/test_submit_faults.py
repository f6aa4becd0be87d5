"""Faults at submit, on a real moto server and uvicorn: 503, no phantom job, safe retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from infra.local.dev import LocalSystem, free_port
from infra.local.stack import provision
from offload.aws import celery_protocol

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(tmp_path: Path) -> Iterator[LocalSystem]:
    """The local AWS and the API, no worker: messages stay where the API put them."""
    local = LocalSystem(aws_port=free_port(), api_port=free_port(), lanes=(), log_dir=tmp_path)
    local.start(timeout_s=90)
    try:
        yield local
    finally:
        local.stop()


def test_sqs_failing_at_submit_is_503_and_leaves_no_job(system: LocalSystem) -> None:
    settings = system.settings()
    sqs = boto3.client("sqs", endpoint_url=system.aws_url, region_name="us-east-1")
    sqs.delete_queue(QueueUrl=settings.queue_url("cpu"))
    request = {"task": "diag.sleep", "payload": {"seconds": 1}, "idempotency_key": "order-9"}
    with httpx.Client(base_url=system.api_url, timeout=30) as api:
        failed = api.post("/jobs", json=request)
        assert failed.status_code == 503, failed.text
        assert failed.json()["error"]["type"] == "service_unavailable"
        assert api.get("/jobs").json()["jobs"] == []
        provision(settings)  # SQS is back
        retried = api.post("/jobs", json=request)
        assert retried.status_code == 202
        again = api.post("/jobs", json=request)  # a client retrying once more
        assert again.json()["job_id"] == retried.json()["job_id"]
        assert [j["job_id"] for j in api.get("/jobs").json()["jobs"]] == [retried.json()["job_id"]]
    out = sqs.receive_message(QueueUrl=settings.queue_url("cpu"), MaxNumberOfMessages=10)
    ids = {celery_protocol.decode(m["Body"])["id"] for m in out.get("Messages", [])}
    assert ids == {retried.json()["job_id"]}


def test_dynamodb_failing_at_submit_is_503_and_leaves_no_job(system: LocalSystem) -> None:
    settings = system.settings()
    dynamodb = boto3.client("dynamodb", endpoint_url=system.aws_url, region_name="us-east-1")
    dynamodb.delete_table(TableName=settings.table_name())
    with httpx.Client(base_url=system.api_url, timeout=30) as api:
        failed = api.post("/jobs", json={"task": "diag.sleep", "payload": {"seconds": 1}})
        assert failed.status_code == 503, failed.text
        provision(settings)  # DynamoDB is back, empty
        assert api.get("/jobs").json()["jobs"] == []
    sqs = boto3.client("sqs", endpoint_url=system.aws_url, region_name="us-east-1")
    out = sqs.receive_message(QueueUrl=settings.queue_url("cpu"), MaxNumberOfMessages=10)
    assert out.get("Messages", []) == []  # nothing was sent for a job that was never stored
