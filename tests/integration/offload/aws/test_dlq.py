"""Dead letters: failed jobs land in their lane's DLQ with the reason, and replay revives them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from functions.api.main import create_app
from offload import JobContext, Payload, PermanentFailure
from offload.aws import celery_protocol
from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import JobStatus
from offload.settings import Settings
from tests.integration.jobs import pending
from workers.runtime import Runtime

catalog = Catalog()
broken = {"on": True}


class Order(Payload):
    order_id: int


@catalog.task("d.charge", lane="cpu", payload=Order, max_attempts=2, backoff_s=0)
def charge(payload: Order, ctx: JobContext) -> str:
    if broken["on"]:
        raise PermanentFailure(f"card processor refused order {payload.order_id}")
    return "charged"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    broken["on"] = True
    with TestClient(create_app(settings, catalog)) as client:
        yield client


def failed_job(settings: Settings, order_id: int) -> str:
    """A d.charge job run by a worker until it failed for good."""
    payload = {"order_id": order_id}
    job_id = pending(JobStore(settings), "d.charge", payload=payload, max_attempts=2)
    outcome = Runtime(settings).execute(catalog.get("d.charge"), job_id, payload, 1, "w/1")
    assert outcome.status is JobStatus.FAILURE
    return job_id


def test_a_failed_job_is_dead_lettered_with_its_reason(
    client: TestClient, settings: Settings
) -> None:
    job_id = failed_job(settings, 7)
    listing = client.get("/dlq/cpu").json()
    assert listing["count"] == 1
    (letter,) = listing["messages"]
    assert (letter["job_id"], letter["task"]) == (job_id, "d.charge")
    assert letter["reason"] == "failed after 1 of 2 attempts"
    assert letter["error"] == {
        "type": "PermanentFailure",
        "message": "card processor refused order 7",
    }
    assert client.get("/dlq/gpu").json() == {"lane": "gpu", "count": 0, "messages": []}
    # looking does not take: the letter is still there
    assert client.get("/dlq/cpu").json()["count"] == 1


def test_replay_reopens_the_job_with_its_history_and_sends_it_again(
    client: TestClient, settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    job_id = failed_job(settings, 8)
    broken["on"] = False  # the fix is deployed
    report = client.post("/dlq/cpu/replay", json={"job_ids": [job_id]}).json()
    assert report == {"replayed": [job_id], "skipped": {}}
    job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["attempts"], job["error"]) == ("PENDING", 0, None)
    (run,) = job["history"]
    assert run["attempts"] == 1 and run["error"]["type"] == "PermanentFailure"
    (body,) = drain("cpu")
    message = celery_protocol.decode(body)
    assert (message["id"], message["kwargs"]["attempt"]) == (job_id, 1)
    assert client.get("/dlq/cpu").json()["count"] == 0
    # the worker now runs it to the end
    outcome = Runtime(settings).execute(catalog.get("d.charge"), job_id, {"order_id": 8}, 1, "w/2")
    assert outcome.status is JobStatus.SUCCESS


def test_replay_of_chosen_jobs_leaves_the_others(client: TestClient, settings: Settings) -> None:
    first, second = failed_job(settings, 1), failed_job(settings, 2)
    report = client.post("/dlq/cpu/replay", json={"job_ids": [second, "not-there"]}).json()
    assert report["replayed"] == [second]
    assert report["skipped"] == {"not-there": "not in the dead-letter queue"}
    remaining = [m["job_id"] for m in client.get("/dlq/cpu").json()["messages"]]
    assert remaining == [first]


def test_a_letter_whose_job_already_ended_is_dropped_on_replay(
    client: TestClient, settings: Settings
) -> None:
    job_id = failed_job(settings, 3)
    client.post("/dlq/cpu/replay", json={"job_ids": [job_id]})
    # a second copy of the same letter (SQS redrive of a duplicate) after the job reopened
    from offload.aws.dlq import bury

    bury(
        settings,
        "cpu",
        celery_protocol.encode(
            task="d.charge", task_id=job_id, kwargs={"payload": {}}, routing_key="cpu"
        ),
        "duplicate",
        job_id=job_id,
        task="d.charge",
    )
    report = client.post("/dlq/cpu/replay").json()
    assert job_id in report["skipped"] and "PENDING" in report["skipped"][job_id]


def test_a_foreign_message_is_listed_and_replayed_as_it_came(
    client: TestClient, settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    boto3.client("sqs").send_message(QueueUrl=settings.dlq_url("cpu"), MessageBody="garbage")
    (letter,) = client.get("/dlq/cpu").json()["messages"]
    assert letter["job_id"] is None
    assert letter["reason"] == "redriven by SQS after too many receives"
    report = client.post("/dlq/cpu/replay").json()
    assert report["replayed"] == [letter["message_id"]]
    assert drain("cpu") == ["garbage"]


def test_unknown_lane_is_422(client: TestClient) -> None:
    assert client.get("/dlq/tpu").status_code == 422


def test_a_payload_that_no_longer_validates_is_dead_lettered_so(
    client: TestClient, settings: Settings
) -> None:
    payload = {"order_id": "seven"}
    job_id = pending(JobStore(settings), "d.charge", payload=payload, max_attempts=2)
    outcome = Runtime(settings).execute(catalog.get("d.charge"), job_id, payload, 1, "w/1")
    assert (outcome.status, outcome.attempt) == (JobStatus.FAILURE, 1)  # no retry can fix it
    (letter,) = client.get("/dlq/cpu").json()["messages"]
    assert letter["error"]["type"] == "InvalidPayload"
    # The job's error and the dead letter's reason are one text, naming the task and lane.
    assert letter["reason"] == letter["error"]["message"]
    assert letter["reason"].startswith("invalid payload for d.charge on the cpu lane: ")
    assert "payload.order_id" in letter["reason"]
