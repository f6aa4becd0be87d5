"""The sweep ends the jobs whose message SQS dead-lettered by itself (received too often,
never finished) and leaves every other job and dead letter alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest

import tasks
from functions.scheduler import main as scheduler
from offload import celery_protocol, leases
from offload.dlq import bury
from offload.job import JobError, JobStatus, utcnow
from offload.sagemaker import SageMakerLane
from offload.settings import Settings
from offload.store import JobStore
from tests.integration import jobs


@pytest.fixture
def store(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    store = JobStore(settings)
    monkeypatch.setattr(scheduler, "settings", settings)
    monkeypatch.setattr(scheduler, "store", store)
    monkeypatch.setattr(scheduler, "lane", SageMakerLane(settings, store, tasks.catalog()))
    yield store


def redriven(settings: Settings, job_id: str, attempt: int = 1) -> None:
    """The job's message as SQS's redrive leaves it in the DLQ: no reason of ours."""
    body = celery_protocol.encode(
        task="diag.sleep",
        task_id=job_id,
        kwargs={"payload": {"seconds": 1}, "attempt": attempt},
        routing_key="cpu",
    )
    boto3.client("sqs").send_message(QueueUrl=settings.dlq_url("cpu"), MessageBody=body)


def test_a_job_whose_message_sqs_dead_lettered_ends_failure_naming_task_and_lane(
    store: JobStore, settings: Settings
) -> None:
    waiting = jobs.pending(store, "diag.sleep", lane="cpu")
    lapsed = jobs.pending(store, "diag.sleep", lane="cpu")
    leases.claim(store, lapsed, 1, "w/1", lease_s=60, max_attempts=3)
    jobs.hold_lease(store, lapsed, "w/1", utcnow() - timedelta(seconds=1))
    for job_id in (waiting, lapsed):
        redriven(settings, job_id)

    result = scheduler.sweep({}, None)

    assert result["redriven"] == {"cpu": 2, "gpu": 0}
    for job_id in (waiting, lapsed):
        job = store.get(job_id)
        assert job.status is JobStatus.FAILURE and job.error is not None
        assert job.error.type == "Unrunnable"
        assert job.error.message.startswith(
            "task 'diag.sleep' cannot run on the cpu lane: its message was received"
        )
    # The dead letters stay: an operator replays them.
    assert (
        len(
            boto3.client("sqs").receive_message(
                QueueUrl=settings.dlq_url("cpu"), MaxNumberOfMessages=10
            )["Messages"]
        )
        == 2
    )
    assert scheduler.sweep({}, None)["redriven"] == {"cpu": 0, "gpu": 0}  # once only


def test_running_ended_stale_and_our_own_dead_letters_are_left_alone(
    store: JobStore, settings: Settings
) -> None:
    running = jobs.pending(store, "diag.sleep", lane="cpu")
    leases.claim(store, running, 1, "w/1", lease_s=60, max_attempts=3)
    ended = jobs.pending(store, "diag.sleep", lane="cpu")
    leases.claim(store, ended, 1, "w/1", lease_s=60, max_attempts=3)
    store.succeed(ended, 1, {"ok": True})
    retried = jobs.pending(store, "diag.sleep", lane="cpu")
    leases.claim(store, retried, 1, "w/1", lease_s=60, max_attempts=3)
    store.retry(retried, 1, JobError(type="Boom", message="once"), utcnow())
    leases.claim(store, retried, 2, "w/1", lease_s=60, max_attempts=3)
    store.retry(retried, 2, JobError(type="Boom", message="twice"), utcnow())
    for job_id in (running, ended):
        redriven(settings, job_id)
    redriven(settings, retried, attempt=1)  # attempt 3 has a message of its own
    ours = jobs.pending(store, "diag.sleep", lane="cpu")
    bury(settings, "cpu", "body", "failed after 3 of 3 attempts", job_id=ours, task="diag.sleep")

    assert scheduler.sweep({}, None)["redriven"] == {"cpu": 0, "gpu": 0}
    assert [store.get(j).status for j in (running, ended, retried, ours)] == [
        JobStatus.STARTED,
        JobStatus.SUCCESS,
        JobStatus.RETRY,
        JobStatus.PENDING,
    ]
