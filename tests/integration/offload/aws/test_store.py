from __future__ import annotations

from datetime import timedelta

import pytest

from offload.aws import store as store_module
from offload.aws import transitions
from offload.aws.items import INDEX_SHARDS, InvalidCursor, to_item
from offload.aws.store import JobStore
from offload.aws.writes import guard_of
from offload.core.holders import Worker
from offload.core.model import Job, JobError, JobStatus, Progress, utcnow
from offload.core.moves import Transition
from offload.errors import JobAlreadyExists, JobNotFound, JobStateConflict
from offload.settings import Settings
from tests.integration import jobs


def new_job(caller: str = "local", task: str = "diag.sleep", max_attempts: int = 3) -> Job:
    return jobs.new_job(task, caller=caller, max_attempts=max_attempts, payload={"seconds": 1})


def start(store: JobStore, job_id: str, attempt: int) -> Job:
    """Begin `attempt` of a job waiting for it (PENDING for the first, RETRY after)."""
    source = JobStatus.PENDING if attempt == 1 else JobStatus.RETRY
    return store.apply(
        transitions.claim(
            job_id, source=source, attempts=attempt - 1, holder=Worker("w/1"), lease_s=60
        )
    )


@pytest.fixture
def store(settings: Settings) -> JobStore:
    return JobStore(settings)


def test_a_job_goes_from_pending_to_success(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    assert store.get(job.job_id).status is JobStatus.PENDING
    started = start(store, job.job_id, 1)
    assert started.status is JobStatus.STARTED and started.attempts == 1
    assert started.started_at is not None
    store.apply(transitions.report_progress(job.job_id, 1, Progress(percent=50, message="half")))
    assert store.get(job.job_id).progress == Progress(percent=50, message="half")
    done = store.apply(transitions.succeed(job.job_id, 1, {"ok": [1, 2.5]}))
    assert done.status is JobStatus.SUCCESS
    assert done.result == {"ok": [1, 2.5]}
    assert done.finished_at is not None and done.payload == {"seconds": 1}


def test_retry_then_failure_keeps_the_last_error(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    start(store, job.job_id, 1)
    later = utcnow() + timedelta(seconds=5)
    retry = store.apply(
        transitions.retry(job.job_id, 1, JobError(type="Boom", message="first"), later)
    )
    assert retry.status is JobStatus.RETRY and retry.next_attempt_at is not None
    start(store, job.job_id, 2)
    failed = store.apply(transitions.fail(job.job_id, 2, JobError(type="Boom", message="second")))
    assert failed.status is JobStatus.FAILURE and failed.attempts == 2
    assert failed.error == JobError(type="Boom", message="second")
    assert failed.next_attempt_at is None


def test_duplicate_create_is_refused(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    with pytest.raises(JobAlreadyExists):
        store.create(job)


@pytest.fixture
def answer_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write carries the same token, as botocore's retry of a write carries its own:
    the second of two identical writes is that retry, after DynamoDB did the first but its
    answer was lost (a dropped connection, a read timeout)."""
    monkeypatch.setattr(store_module, "new_token", lambda: "7" * 32)


@pytest.mark.usefixtures("answer_lost")
def test_a_write_whose_answer_was_lost_is_done_not_a_conflict(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    store.create(job)  # the retry of a create that landed: not JobAlreadyExists
    started = start(store, job.job_id, 1)
    again = start(store, job.job_id, 1)  # not "STARTED by someone": it is this claim's own
    assert (again.status, again.attempts, again.lease_owner) == (JobStatus.STARTED, 1, "w/1")
    assert again.lease_expires_at == started.lease_expires_at
    assert store.apply(transitions.succeed(job.job_id, 1, {"n": 1})) == store.apply(
        transitions.succeed(job.job_id, 1, {"n": 1})
    )


def test_another_writer_is_still_a_conflict_whatever_its_state(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    start(store, job.job_id, 1)
    store.apply(transitions.succeed(job.job_id, 1, {"n": 1}))
    with pytest.raises(JobStateConflict):
        store.apply(
            transitions.succeed(job.job_id, 1, {"n": 1})
        )  # the same state, but a write of its own


def test_duplicate_delivery_cannot_start_the_same_attempt_twice(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    start(store, job.job_id, 1)
    with pytest.raises(JobStateConflict) as caught:
        start(store, job.job_id, 1)
    assert caught.value.current_status == "STARTED"
    assert caught.value.current_attempts == 1


def test_a_stale_writer_cannot_overwrite_a_newer_state(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    start(store, job.job_id, 1)
    store.apply(transitions.retry(job.job_id, 1, JobError(type="E", message="m"), utcnow()))
    start(store, job.job_id, 2)
    # attempt 1's late success must not land on attempt 2
    with pytest.raises(JobStateConflict):
        store.apply(transitions.succeed(job.job_id, 1, "late"))
    with pytest.raises(JobStateConflict):
        store.apply(transitions.report_progress(job.job_id, 1, Progress(percent=1)))
    store.apply(transitions.succeed(job.job_id, 2, "right"))
    # and nothing moves a terminal job
    with pytest.raises(JobStateConflict, match="SUCCESS"):
        store.apply(transitions.fail(job.job_id, 2, JobError(type="E", message="m")))
    assert store.get(job.job_id).result == "right"


def test_moves_outside_the_design_are_refused(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    with pytest.raises(JobStateConflict):  # PENDING -> SUCCESS skips STARTED
        store.apply(transitions.succeed(job.job_id, 0, "x"))
    with pytest.raises(JobStateConflict):  # PENDING -> RETRY
        store.apply(transitions.retry(job.job_id, 0, JobError(type="E", message="m"), utcnow()))


def test_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.get("nope")
    with pytest.raises(JobStateConflict, match="does not exist"):
        start(store, "nope", 1)


def test_discard_only_removes_an_undispatched_pending_job(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    store.discard_pending(job.job_id)
    with pytest.raises(JobNotFound):
        store.get(job.job_id)
    other = new_job()
    store.create(other)
    start(store, other.job_id, 1)
    with pytest.raises(JobStateConflict):
        store.discard_pending(other.job_id)


def test_listing_is_newest_first_paginated_and_filtered(store: JobStore) -> None:
    created = []
    for n in range(7):
        job = new_job(task="diag.sleep" if n % 2 else "diag.flaky")
        store.create(job)
        created.append(job.job_id)
    store.create(new_job(caller="someone-else"))
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = store.list_for_caller("local", limit=3, cursor=cursor)
        assert len(page) <= 3
        seen += [job.job_id for job in page]
        if cursor is None:
            break
    assert seen == list(reversed(created))
    flaky, _ = store.list_for_caller("local", limit=10, task="diag.flaky")
    assert [j.job_id for j in flaky] == [created[n] for n in (6, 4, 2, 0)]
    start(store, created[3], 1)
    started, _ = store.list_for_caller("local", limit=10, status=JobStatus.STARTED)
    assert [j.job_id for j in started] == [created[3]]
    # filtered pages are full pages, and their cursors continue where they stopped
    first, cursor = store.list_for_caller("local", limit=2, task="diag.flaky")
    assert [j.job_id for j in first] == [created[6], created[4]] and cursor
    rest, _ = store.list_for_caller("local", limit=5, task="diag.flaky", cursor=cursor)
    assert [j.job_id for j in rest] == [created[2], created[0]]


def test_a_cursor_is_checked(store: JobStore) -> None:
    for _ in range(3):
        store.create(new_job())
    _, cursor = store.list_for_caller("local", limit=1)
    assert cursor
    with pytest.raises(InvalidCursor):
        store.list_for_caller("someone-else", limit=1, cursor=cursor)
    with pytest.raises(InvalidCursor):
        store.list_for_caller("local", limit=1, cursor="garbage!")


def test_jobs_are_in_the_in_flight_index_until_they_end_and_failures_in_theirs(
    store: JobStore,
) -> None:
    soon = utcnow() + timedelta(seconds=5)
    done, failed, running = new_job(), new_job(), new_job()
    for job in (done, failed, running):
        store.create(job)
        start(store, job.job_id, 1)
    store.apply(transitions.succeed(done.job_id, 1, None))
    store.apply(transitions.fail(failed.job_id, 1, JobError(type="Boom", message="m")))
    # Across every shard of the cpu lane; other lanes' jobs are not there.
    gpu = jobs.new_job("embeddings.embed", lane="gpu", payload={"texts": ["x"]})
    store.create(gpu)
    assert [j.job_id for j in store.in_flight("cpu", soon)] == [running.job_id]
    assert [j.job_id for j in store.in_flight("gpu", soon)] == [gpu.job_id]
    assert [j.job_id for j in store.failed_since(utcnow() - timedelta(minutes=1))] == [
        failed.job_id
    ]
    assert store.failed_since(utcnow() + timedelta(seconds=1)) == []

    # A replay takes the job out of the failures and back into flight.
    store.apply(transitions.reopen(store.get(failed.job_id)))
    assert store.failed_since(utcnow() - timedelta(minutes=1)) == []
    assert {j.job_id for j in store.in_flight("cpu", soon)} == {running.job_id, failed.job_id}


def test_the_indexes_spread_each_lane_over_shards(store: JobStore) -> None:
    created = [new_job() for _ in range(24)]
    for job in created:
        store.create(job)
    keys = {to_item(job)["inflight"]["S"] for job in created}
    assert keys == {f"cpu#{n}" for n in range(INDEX_SHARDS)}
    oldest_first = store.in_flight("cpu", utcnow() + timedelta(seconds=5), limit=30)
    assert [j.job_id for j in oldest_first] == [j.job_id for j in created]
    assert len(store.in_flight("cpu", utcnow() + timedelta(seconds=5), limit=5)) == 5


def test_a_write_without_a_set_clause_still_carries_its_token(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    start(store, job.job_id, 1)
    store.apply(transitions.report_progress(job.job_id, 1, Progress(percent=10, message="a tenth")))
    store.apply(guard_of(Transition.REPORT_PROGRESS, job.job_id).remove("progress").write())
    item = store.client.get_item(TableName=store.table, Key={"job_id": {"S": job.job_id}})["Item"]
    assert item is not None and "progress" not in item and "write_token" in item
