"""Claiming deliveries: one runner per attempt, takeover once a lease expires."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from offload.aws import transitions
from offload.aws.store import JobStore
from offload.core.holders import Worker
from offload.core.model import JobError, JobStatus, utcnow
from offload.errors import JobStateConflict
from offload.runtime.claiming import Verdict, claim
from offload.settings import Settings
from tests.integration import jobs


@pytest.fixture
def store(settings: Settings) -> JobStore:
    return JobStore(settings)


def pending(store: JobStore, max_attempts: int = 3) -> str:
    return jobs.pending(store, max_attempts=max_attempts)


def test_first_delivery_runs_and_takes_the_lease(store: JobStore) -> None:
    job_id = pending(store)
    claimed = claim(store, job_id, 1, "a/1", 30, 3)
    assert (claimed.verdict, claimed.attempt) == (Verdict.RUN, 1)
    job = store.get(job_id)
    assert job.lease_owner == "a/1" and job.lease_expires_at is not None
    assert job.lease_expires_at > utcnow() + timedelta(seconds=25)


def test_a_second_delivery_during_a_live_lease_is_busy(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "a/1", 30, 3)
    again = claim(store, job_id, 1, "b/2", 30, 3)
    assert again.verdict is Verdict.BUSY and "a/1" in again.reason
    assert store.get(job_id).lease_owner == "a/1"


def test_an_expired_lease_is_taken_over_as_a_new_attempt(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "a/1", 0.05, 3)
    time.sleep(0.1)
    taken = claim(store, job_id, 1, "b/2", 30, 3)
    assert (taken.verdict, taken.attempt) == (Verdict.RUN, 2)
    job = store.get(job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.STARTED, 2, "b/2")
    assert job.error is not None and job.error.type == "WorkerLost"
    # the dead worker's late writes are refused
    with pytest.raises(JobStateConflict):
        store.apply(transitions.succeed(job_id, 1, "late"))
    with pytest.raises(JobStateConflict):
        store.apply(transitions.renew(job_id, Worker("a/1"), 30))
    store.apply(transitions.renew(job_id, Worker("b/2"), 30))
    assert store.apply(transitions.succeed(job_id, 2, "ok")).status is JobStatus.SUCCESS


def test_two_deliveries_racing_for_an_expired_lease_make_one_run(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "a/1", 0.05, 3)
    time.sleep(0.1)
    verdicts = [claim(store, job_id, 1, f"w/{n}", 30, 3).verdict for n in range(3)]
    assert verdicts.count(Verdict.RUN) == 1 and store.get(job_id).attempts == 2


def test_a_lost_last_attempt_fails_the_job(store: JobStore) -> None:
    job_id = pending(store, max_attempts=1)
    claim(store, job_id, 1, "a/1", 0.05, 1)
    time.sleep(0.1)
    lost = claim(store, job_id, 1, "b/2", 30, 1)
    assert lost.verdict is Verdict.LOST
    job = store.get(job_id)
    assert job.status is JobStatus.FAILURE
    assert job.error is not None and job.error.type == "WorkerLost"


def test_released_lease_is_taken_over_at_once(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "a/1", 300, 3)
    store.apply(transitions.release(job_id, Worker("a/1")))
    assert claim(store, job_id, 1, "b/2", 30, 3).verdict is Verdict.RUN


def test_finished_and_stale_deliveries_are_dropped(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "a/1", 30, 3)
    store.apply(transitions.succeed(job_id, 1, "done"))
    assert claim(store, job_id, 1, "b/2", 30, 3).verdict is Verdict.SKIP
    assert claim(store, "no-such-job", 1, "b/2", 30, 3).verdict is Verdict.SKIP


def test_an_early_retry_waits_for_its_time(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "a/1", 30, 3)
    store.apply(
        transitions.retry(job_id, 1, JobError(type="E", message="m"), utcnow() + timedelta(hours=2))
    )
    # a backoff past SQS's 15-minute delay: the retry's message arrives early, in steps
    for attempt in (1, 2):  # the failed attempt's message, or the retry's own
        early = claim(store, job_id, attempt, "b/2", 30, 3)
        assert (early.verdict, early.attempt) == (Verdict.WAIT, 2)
        assert 7100 < early.wait_s <= 7200
    assert store.get(job_id).status is JobStatus.RETRY


def test_a_due_retry_runs_from_its_own_message(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "a/1", 30, 3)
    store.apply(transitions.retry(job_id, 1, JobError(type="E", message="m"), utcnow()))
    retried = claim(store, job_id, 2, "b/2", 30, 3)
    assert (retried.verdict, retried.attempt) == (Verdict.RUN, 2)


def test_a_due_retry_whose_message_was_lost_runs_from_the_original(store: JobStore) -> None:
    job_id = pending(store)
    claim(store, job_id, 1, "a/1", 30, 3)
    store.apply(
        transitions.retry(
            job_id, 1, JobError(type="E", message="m"), utcnow() - timedelta(seconds=1)
        )
    )
    taken = claim(store, job_id, 1, "b/2", 30, 3)
    assert (taken.verdict, taken.attempt) == (Verdict.RUN, 2)
