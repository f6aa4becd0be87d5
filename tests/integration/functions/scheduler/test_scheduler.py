"""The scheduled functions: the sweep counts stuck jobs and ends the jobs whose message SQS
dead-lettered by itself; schedules submit periodic jobs once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

import tasks
from functions.scheduler import main as scheduler
from infra.local.events import LocalEvents, schedules
from offload.aws import celery_protocol, transitions
from offload.aws.dlq import bury
from offload.aws.store import JobStore
from offload.core.holders import ParkedOn
from offload.core.model import JobError, JobStatus, utcnow
from offload.errors import UnknownTask
from offload.runtime import claiming
from offload.runtime.sagemaker_lane import SageMakerLane
from offload.runtime.stuck import stuck_jobs
from offload.settings import Settings
from tests.integration import jobs


@pytest.fixture
def store(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    store = JobStore(settings)
    monkeypatch.setattr(scheduler, "settings", settings)
    monkeypatch.setattr(scheduler, "store", store)
    monkeypatch.setattr(scheduler, "lane", SageMakerLane(settings, store, tasks.catalog()))
    yield store


# A rag.answer payload: the stuck-job tests never run the task.
ASK = {"index": "i", "question": "q"}


def stuck_metrics(output: str) -> dict[str, float]:
    found = {}
    for line in output.splitlines():
        if line.startswith("{") and '"StuckJobs"' in line:
            record = json.loads(line)
            found[record["lane"]] = record["StuckJobs"][0]
    return found


def test_the_sweep_counts_jobs_stuck_past_their_time_limit_per_lane(
    store: JobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    stuck = jobs.started_ago(store, "diag.sleep", lane="cpu", hours=2, payload={"seconds": 1})
    # Within its 660 s limit:
    jobs.started_ago(store, "diag.sleep", lane="cpu", hours=0.1, payload={"seconds": 1})
    parked = jobs.started_ago(store, "rag.answer", lane="gpu", hours=2, payload=ASK)
    # Waiting for a job of its own, its recheck ahead: not stuck.
    jobs.hold_lease(store, parked, ParkedOn("child").encoded(), utcnow() + timedelta(minutes=5))
    jobs.pending(store, "embeddings.embed", lane="gpu", payload={"texts": ["x"]})  # waiting

    result = scheduler.sweep({}, None)
    assert result["stuck"] == {"cpu": 1, "gpu": 0}
    # Zero is emitted too: the alarm treats a missing value as a sweep that stopped.
    assert stuck_metrics(capsys.readouterr().out) == {"cpu": 1.0, "gpu": 0.0}
    assert store.get(stuck).status is JobStatus.STARTED  # counted, not touched


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "schedule": "cpu-canary",
        "task": "diag.sleep",
        "payload": {"seconds": 0},
        "scheduled_time": "2026-11-21T12:00:00Z",
        **overrides,
    }


def test_a_schedule_submits_its_job_once_per_scheduled_time(
    store: JobStore, drain: Callable[[str], list[str]]
) -> None:
    first = scheduler.submit(event(), None)
    again = scheduler.submit(event(), None)  # Scheduler delivered the same firing twice
    assert first == again and first["status"] == "PENDING"
    # One job. (A repeat that finds it not yet started sends it again, in case the first
    # send failed: the job's claim lets only one delivery run it.)
    sent = [celery_protocol.decode(body) for body in drain("cpu")]
    assert {(m["task"], m["id"]) for m in sent} == {("diag.sleep", first["job_id"])}
    job = store.get(first["job_id"])
    assert (job.caller, job.payload["seconds"]) == ("scheduler", 0)

    later = scheduler.submit(event(scheduled_time="2026-11-21T12:15:00Z"), None)
    assert later["job_id"] != first["job_id"]


def test_a_schedule_with_a_bad_input_fails_saying_why(store: JobStore) -> None:
    with pytest.raises(scheduler.BadSchedule, match="scheduled_time"):
        scheduler.submit({"schedule": "x", "task": "diag.sleep"}, None)
    with pytest.raises(UnknownTask):
        scheduler.submit(event(task="diag.nope"), None)


def test_the_local_stack_fires_the_templates_rate_schedules(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    (canary,) = schedules()
    assert (canary.name, canary.every_s) == ("SchedulerFunction.CpuCanary", 900)
    events = LocalEvents(settings, tasks.catalog())
    assert events.fire_if_due(canary) is None  # not yet a period since it started
    fired = events.fire_if_due(canary, now=time.monotonic() + 901)
    assert fired is not None and fired["status"] == "PENDING"
    job = JobStore(settings).get(fired["job_id"])
    assert (job.task, job.caller) == ("diag.sleep", "scheduler")
    assert [celery_protocol.decode(b)["id"] for b in drain("cpu")] == [job.job_id]


def test_a_parked_job_is_stuck_only_once_its_recheck_is_long_overdue(store: JobStore) -> None:
    settings = store.settings
    overdue = jobs.started_ago(store, "rag.answer", lane="gpu", hours=2, payload=ASK)
    waiting_fine = jobs.started_ago(store, "rag.answer", lane="gpu", hours=2, payload=ASK)
    for job_id, lease_hours in ((overdue, -1.0), (waiting_fine, 0.05)):
        until = utcnow() + timedelta(hours=lease_hours)
        jobs.hold_lease(store, job_id, ParkedOn("child").encoded(), until)
    # Started long ago but its lease is live (just resumed, or renewed): not stuck either.
    live = jobs.started_ago(store, "diag.sleep", lane="cpu", hours=2, payload={"seconds": 1})
    jobs.hold_lease(store, live, "w/1", utcnow() + timedelta(seconds=40))
    assert [job.job_id for job in stuck_jobs(store, tasks.catalog(), "gpu")] == [overdue]
    assert stuck_jobs(store, tasks.catalog(), "cpu") == []
    assert settings.wait_recheck_s < 3600  # the overdue one is an hour past its recheck


# -- jobs whose message SQS dead-lettered by itself (offload.runtime.redriven) --------------------


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
    claiming.claim(store, lapsed, 1, "w/1", lease_s=60, max_attempts=3)
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
    claiming.claim(store, running, 1, "w/1", lease_s=60, max_attempts=3)
    ended = jobs.pending(store, "diag.sleep", lane="cpu")
    claiming.claim(store, ended, 1, "w/1", lease_s=60, max_attempts=3)
    store.apply(transitions.succeed(ended, 1, {"ok": True}))
    retried = jobs.pending(store, "diag.sleep", lane="cpu")
    claiming.claim(store, retried, 1, "w/1", lease_s=60, max_attempts=3)
    store.apply(transitions.retry(retried, 1, JobError(type="Boom", message="once"), utcnow()))
    claiming.claim(store, retried, 2, "w/1", lease_s=60, max_attempts=3)
    store.apply(transitions.retry(retried, 2, JobError(type="Boom", message="twice"), utcnow()))
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
