"""A job whose message no worker can run ends FAILURE naming its task and lane, through the
moves DESIGN.md allows, and never takes a job from a worker that runs it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from offload.aws import transitions
from offload.aws.store import JobStore
from offload.core.model import JobError, JobStatus, utcnow
from offload.runtime import claiming
from offload.runtime.unrunnable import fail_unrunnable, unrunnable_error
from offload.settings import Settings
from tests.integration.jobs import hold_lease, pending

ERROR = unrunnable_error("app.private", "cpu", "no worker of this lane has the task")


def test_the_error_names_the_task_and_the_lane() -> None:
    assert ERROR == JobError(
        type="Unrunnable",
        message=(
            "task 'app.private' cannot run on the cpu lane: no worker of this lane has the task"
        ),
    )
    assert unrunnable_error(None, "gpu", "not a Celery task message").message == (
        "its message cannot run on the gpu lane: not a Celery task message"
    )


def test_a_pending_job_fails_with_one_attempt(settings: Settings) -> None:
    store = JobStore(settings)
    job_id = pending(store, "app.private")
    job = fail_unrunnable(store, job_id, ERROR, "w/1")
    assert job is not None
    assert (job.status, job.attempts, job.error) == (JobStatus.FAILURE, 1, ERROR)
    assert store.get(job_id).finished_at is not None


def test_a_retry_fails_as_its_next_attempt(settings: Settings) -> None:
    store = JobStore(settings)
    job_id = pending(store, "app.private")
    claiming.claim(store, job_id, 1, "w/1", lease_s=60, max_attempts=3)
    store.apply(transitions.retry(job_id, 1, JobError(type="Boom", message="once"), utcnow()))
    job = fail_unrunnable(store, job_id, ERROR, "w/2")
    assert job is not None
    assert (job.status, job.attempts, job.error) == (JobStatus.FAILURE, 2, ERROR)


@pytest.mark.parametrize(
    ("lapsed", "ends"), [(False, JobStatus.STARTED), (True, JobStatus.FAILURE)]
)
def test_a_started_job_fails_only_once_its_lease_lapsed(
    settings: Settings, lapsed: bool, ends: JobStatus
) -> None:
    store = JobStore(settings)
    job_id = pending(store, "app.private")
    claiming.claim(store, job_id, 1, "w/1", lease_s=60, max_attempts=3)
    hold_lease(store, job_id, "w/1", utcnow() + timedelta(seconds=-5 if lapsed else 60))
    job = fail_unrunnable(store, job_id, ERROR, "w/2")
    assert job is not None and job.status is ends
    assert store.get(job_id).status is ends


def test_an_ended_job_is_left_and_a_missing_one_is_none(settings: Settings) -> None:
    store = JobStore(settings)
    job_id = pending(store, "app.private")
    claiming.claim(store, job_id, 1, "w/1", lease_s=60, max_attempts=3)
    store.apply(transitions.succeed(job_id, 1, {"ok": True}))
    job = fail_unrunnable(store, job_id, ERROR, "w/2")
    assert job is not None and job.status is JobStatus.SUCCESS and job.error is None
    assert fail_unrunnable(store, "no-such-job", ERROR, "w/2") is None
