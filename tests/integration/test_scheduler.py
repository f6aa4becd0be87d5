"""The scheduled functions: the sweep counts stuck jobs; schedules submit periodic jobs once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import tasks
from functions.scheduler import main as scheduler
from infra.local_events import LocalEvents, schedules
from offload import celery_protocol, waiting
from offload.errors import UnknownTask
from offload.job import JobStatus, utcnow
from offload.sagemaker import SageMakerLane
from offload.settings import Settings
from offload.store import JobStore
from offload.stuck import stuck_jobs
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
    jobs.hold_lease(store, parked, waiting.WAITING + "child", utcnow() + timedelta(minutes=5))
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
        jobs.hold_lease(store, job_id, waiting.WAITING + "child", until)
    # Started long ago but its lease is live (just resumed, or renewed): not stuck either.
    live = jobs.started_ago(store, "diag.sleep", lane="cpu", hours=2, payload={"seconds": 1})
    jobs.hold_lease(store, live, "w/1", utcnow() + timedelta(seconds=40))
    assert [job.job_id for job in stuck_jobs(store, tasks.catalog(), "gpu")] == [overdue]
    assert stuck_jobs(store, tasks.catalog(), "cpu") == []
    assert settings.wait_recheck_s < 3600  # the overdue one is an hour past its recheck
