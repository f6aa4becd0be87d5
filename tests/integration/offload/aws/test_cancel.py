"""Cancellation: before a job starts, while it runs (cooperatively), and after it ended."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.api.main import create_app
from offload import JobContext, Payload
from offload.aws import transitions
from offload.aws.cancel import request_cancel
from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import JobStatus
from offload.errors import JobStateConflict
from offload.runtime.attempt import Attempt
from offload.runtime.claiming import Verdict, claim
from offload.settings import Settings
from tests.integration import jobs

catalog = Catalog()
ran: list[str] = []


class Empty(Payload):
    pass


@catalog.task("c.cancels_itself", lane="cpu", payload=Empty, max_attempts=3)
def cancels_itself(payload: Empty, ctx: JobContext) -> str:
    # Stands for a client's cancel arriving while the task runs.
    request_cancel(JobStore(ctx.settings), ctx.job_id)
    ctx.progress(50, "half way")  # learns of it here
    ran.append("after the report")
    return "finished anyway"


@pytest.fixture
def store(settings: Settings) -> JobStore:
    ran.clear()
    return JobStore(settings)


def pending(store: JobStore, task: str = "c.cancels_itself") -> str:
    return jobs.pending(store, task)


def test_a_pending_job_is_revoked_and_never_runs(store: JobStore) -> None:
    job_id = pending(store)
    revoked = request_cancel(store, job_id)
    assert revoked.status is JobStatus.REVOKED and revoked.finished_at is not None
    late = claim(store, job_id, 1, "w/1", 30, 3)
    assert late.verdict is Verdict.SKIP
    assert store.get(job_id).status is JobStatus.REVOKED


def test_a_running_task_stops_at_its_next_progress_report(store: JobStore) -> None:
    job_id = pending(store)
    outcome = Attempt(store, catalog.get("c.cancels_itself"), job_id, 1, {}, owner="w/1").run()
    assert outcome.status is JobStatus.REVOKED
    assert ran == []
    job = store.get(job_id)
    assert (job.status, job.attempts, job.cancel_requested) == (JobStatus.REVOKED, 1, True)


def test_a_running_job_is_flagged_not_revoked(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "w/1", 30, 3)
    flagged = request_cancel(store, job_id)
    assert (flagged.status, flagged.cancel_requested) == (JobStatus.STARTED, True)


def test_a_lost_worker_s_cancelled_job_is_revoked_not_taken_over(store: JobStore) -> None:
    import time

    job_id = pending(store)
    claim(store, job_id, 1, "w/1", 0.05, 3)
    request_cancel(store, job_id)
    time.sleep(0.1)
    assert claim(store, job_id, 1, "w/2", 30, 3).verdict is Verdict.SKIP
    assert store.get(job_id).status is JobStatus.REVOKED


def test_an_ended_job_cannot_be_cancelled(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "w/1", 30, 3)
    store.apply(transitions.succeed(job_id, 1, "done"))
    with pytest.raises(JobStateConflict, match="SUCCESS"):
        request_cancel(store, job_id)


def test_cancel_over_http(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        job: dict[str, Any] = client.post(
            "/jobs", json={"task": "diag.sleep", "payload": {"seconds": 5}}
        ).json()
        response = client.post(f"/jobs/{job['job_id']}/cancel")
        assert response.status_code == 202
        assert response.json()["status"] == "REVOKED"
        again = client.post(f"/jobs/{job['job_id']}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["type"] == "conflict"
        missing = client.post("/jobs/00000000-0000-0000-0000-000000000000/cancel")
        assert missing.status_code == 404
