"""Every change of a job's record, by name: each builds one conditional write (`Write`) from
the allowed-moves table (`offload.core.moves`), and `JobStore.apply` sends it.

A `Write` is data: its condition, what it sets and removes. The store sends it as one
`UpdateItem` (`JobStore.apply`; a create as `PutItem`, `JobStore.create`; a discard as
`DeleteItem`, `JobStore.remove`) today; being data, not a call, many of them can
later be rendered as elements of one `TransactWriteItems` or PartiQL batch, to apply one
transition to many jobs in a single request. No caller writes a condition expression or an
attribute name.

Conditions are the guard of each move: the status (from the table), and, where the caller
says so, the attempt number, the lease's holder or its expiry as seen, a retry's due time,
and that no cancellation was asked. A stale or duplicate writer fails its condition and gets
`JobStateConflict`; it never overwrites a newer state.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from offload.aws import items
from offload.aws.writes import Write, guard_of, json_value, number, string, time_value, until
from offload.core.holders import Endpoint, LeaseHolder, ParkedOn
from offload.core.model import Job, JobError, JobStatus, PastRun, Progress, utcnow
from offload.core.moves import Transition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# -- creation --------------------------------------------------------------------------------


def create(job: Job) -> Write:
    """Store a new PENDING job (`JobAlreadyExists` when its id is taken)."""
    if job.status is not JobStatus.PENDING:
        raise ValueError(f"a new job is PENDING, not {job.status.value}")
    return Write(
        Transition.CREATE,
        job.job_id,
        "attribute_not_exists(job_id)",
        item=items.to_item(job),
        expires_from=job.created_at,
    )


def discard(job_id: str) -> Write:
    """Delete a job that was never dispatched (its submit failed): no orphan PENDING."""
    return guard_of(Transition.DISCARD, job_id).attempts(0).write(delete=True)


# -- a delivery's claim and the lease --------------------------------------------------------


def claim(
    job_id: str,
    *,
    source: JobStatus,
    attempts: int,
    holder: LeaseHolder,
    lease_s: float,
    due_by: datetime | None = None,
    now: datetime | None = None,
) -> Write:
    """Start attempt `attempts + 1` for `holder`, if the job is still in `source` after
    `attempts` attempts (and a retry is due by `due_by`, when given)."""
    now = now or utcnow()
    return (
        guard_of(Transition.CLAIM, job_id, frozenset({source}))
        .attempts(attempts)
        .due_by(due_by)
        .set(**_started(attempts + 1, holder, lease_s, now))
        .remove("next_attempt_at", "progress")
        .moved(now)
        .write()
    )


def take_over(
    job_id: str,
    *,
    attempts: int,
    holder: LeaseHolder,
    lease_s: float,
    lease_seen: datetime | None,
    lost: JobError,
    now: datetime | None = None,
) -> Write:
    """Start attempt `attempts + 1` for `holder` in place of a worker whose lease (as seen:
    `lease_seen`) lapsed; `lost` says what became of that attempt."""
    now = now or utcnow()
    return (
        guard_of(Transition.TAKE_OVER, job_id)
        .attempts(attempts)
        .lease_seen(lease_seen)
        .set(
            **_started(attempts + 1, holder, lease_s, now),
            error=string(lost.model_dump_json()),
        )
        .remove("next_attempt_at", "progress")
        .moved(now)
        .write()
    )


def _started(
    attempt: int, holder: LeaseHolder, lease_s: float, now: datetime
) -> dict[str, AttributeValueTypeDef]:
    return {
        "attempts": number(attempt),
        "started_at": time_value(now),
        "lease_owner": string(holder.encoded()),
        "lease_expires_at": until(now, lease_s),
    }


def renew(job_id: str, holder: LeaseHolder, lease_s: float, now: datetime | None = None) -> Write:
    """Extend the running attempt's lease while `holder` has it. Not a change clients see:
    `updated_at` stays (the sweeps look for jobs unchanged for long)."""
    now = now or utcnow()
    guard = guard_of(Transition.RENEW, job_id).held_by(holder)
    return guard.set(lease_expires_at=until(now, lease_s)).write()


def release(job_id: str, holder: LeaseHolder, now: datetime | None = None) -> Write:
    """Let `holder`'s lease lapse now (a stopping worker), so a redelivery takes over at once."""
    now = now or utcnow()
    return (
        guard_of(Transition.RELEASE, job_id)
        .held_by(holder)
        .set(lease_expires_at=time_value(now))
        .write()
    )


# -- waiting for a child job -----------------------------------------------------------------


def park(
    job_id: str,
    attempt: int,
    holder: LeaseHolder,
    child_id: str,
    for_s: float,
    now: datetime | None = None,
) -> Write:
    """Hand attempt `attempt` from `holder` to the wait for `child_id`, due again in `for_s`.
    Not once its cancellation was asked: the worker that holds it revokes it instead."""
    now = now or utcnow()
    return (
        guard_of(Transition.PARK, job_id)
        .attempts(attempt)
        .held_by(holder)
        .not_cancelled()
        .set(lease_owner=string(ParkedOn(child_id).encoded()), lease_expires_at=until(now, for_s))
        .moved(now)
        .write()
    )


def resume(job: Job, holder: LeaseHolder, lease_s: float, now: datetime | None = None) -> Write:
    """Give a parked attempt whose wait is due back to `holder`, as the same attempt. Not once
    its cancellation was asked: the canceller revokes it."""
    child_id = job.parked_on
    if child_id is None or job.lease_expires_at is None:
        raise ValueError(f"job {job.job_id} is not parked")
    now = now or utcnow()
    return (
        guard_of(Transition.RESUME, job.job_id)
        .attempts(job.attempts)
        .held_by(ParkedOn(child_id))
        .lease_seen(job.lease_expires_at)
        .not_cancelled()
        .set(lease_owner=string(holder.encoded()), lease_expires_at=until(now, lease_s))
        .moved(now)
        .write()
    )


def wake(parent_id: str, child_id: str, now: datetime | None = None) -> Write:
    """Make the wait of `parent_id` for `child_id` due now."""
    now = now or utcnow()
    guard = guard_of(Transition.WAKE, parent_id).held_by(ParkedOn(child_id))
    return guard.set(lease_expires_at=time_value(now)).moved(now).write()


# -- while it runs ---------------------------------------------------------------------------


def report_progress(
    job_id: str, attempt: int, progress: Progress, now: datetime | None = None
) -> Write:
    """Record progress of the running attempt. A cancel request makes it fail, which is how
    the task learns of it."""
    now = now or utcnow()
    return (
        guard_of(Transition.REPORT_PROGRESS, job_id)
        .attempts(attempt)
        .not_cancelled()
        .set(progress=string(progress.model_dump_json()))
        .moved(now)
        .write()
    )


def flag_cancel(job_id: str, now: datetime | None = None) -> Write:
    """Ask a running job to stop: it does at its next progress report or heartbeat."""
    now = now or utcnow()
    guard = guard_of(Transition.FLAG_CANCEL, job_id)
    return guard.set(cancel_requested={"BOOL": True}).moved(now).write()


# -- ends ------------------------------------------------------------------------------------


def revoke(job_id: str, now: datetime | None = None) -> Write:
    """REVOKED before it started (from PENDING or RETRY, after any number of attempts)."""
    now = now or utcnow()
    guard = guard_of(Transition.REVOKE, job_id).set(finished_at=time_value(now))
    return guard.remove("next_attempt_at").moved(now).write()


def revoke_running(
    job_id: str, attempt: int, holder: LeaseHolder | None = None, now: datetime | None = None
) -> Write:
    """End a running attempt that obeyed a cancel request as REVOKED (only while `holder`
    has its lease, when given)."""
    now = now or utcnow()
    guard = guard_of(Transition.REVOKE_RUNNING, job_id).attempts(attempt).held_by(holder)
    return guard.set(finished_at=time_value(now)).moved(now).write()


def succeed(
    job_id: str,
    attempt: int,
    result: Any,
    holder: LeaseHolder | None = None,
    now: datetime | None = None,
) -> Write:
    """Finish the running attempt with its result (only while `holder` has its lease, when
    given: attempt numbers start again at a replay, lease holders do not)."""
    now = now or utcnow()
    guard = guard_of(Transition.SUCCEED, job_id).attempts(attempt).held_by(holder)
    guard.set(result=json_value(result), finished_at=time_value(now)).remove("error")
    return guard.moved(now).write()


def retry(
    job_id: str,
    attempt: int,
    error: JobError,
    next_attempt_at: datetime,
    holder: LeaseHolder | None = None,
    now: datetime | None = None,
) -> Write:
    """Record a failed attempt that will be tried again at `next_attempt_at`."""
    now = now or utcnow()
    guard = guard_of(Transition.RETRY, job_id).attempts(attempt).held_by(holder)
    guard.set(error=string(error.model_dump_json()), next_attempt_at=time_value(next_attempt_at))
    return guard.moved(now).write()


def fail(
    job_id: str,
    attempt: int,
    error: JobError,
    *,
    lease_seen: datetime | None = None,
    holder: LeaseHolder | None = None,
    now: datetime | None = None,
) -> Write:
    """Finish the job as FAILURE with the error of its last attempt (only while its lease is
    the one seen, or `holder`'s, when given)."""
    now = now or utcnow()
    guard = guard_of(Transition.FAIL, job_id).attempts(attempt).lease_seen(lease_seen)
    guard.held_by(holder).set(error=string(error.model_dump_json()), finished_at=time_value(now))
    return guard.remove("next_attempt_at").moved(now).write()


# -- an operator's replay, and the sagemaker lane ---------------------------------------------


def reopen(job: Job, now: datetime | None = None) -> Write:
    """FAILURE -> PENDING for a replay, keeping the failed run in `history`."""
    now = now or utcnow()
    run = PastRun(
        attempts=job.attempts,
        error=job.error,
        started_at=job.started_at,
        finished_at=job.finished_at,
        replayed_at=now,
    )
    history = [past.model_dump(mode="json") for past in [*job.history, run]]
    return (
        guard_of(Transition.REOPEN, job.job_id)
        .attempts(job.attempts)
        .set(
            attempts=number(0),
            history=json_value(history),
            inflight=string(items.inflight_key(job.job_id, job.lane)),
            inflight_caller=string(job.caller),
        )
        .remove(
            "error",
            "finished_at",
            "started_at",
            "result",
            "progress",
            "next_attempt_at",
            "lease_owner",
            "lease_expires_at",
            "cancel_requested",
            "failed",
        )
        .moved(now)
        .write()
    )


def record_invoked(
    job_id: str,
    attempt: int,
    locations: dict[str, str | None],
    endpoint: Endpoint | None = None,
    now: datetime | None = None,
) -> Write:
    """Record attempt `attempt` as sent to a SageMaker endpoint, with where its input is and
    where SageMaker will write (those of `locations` known). Nobody renews such a lease:
    there is no expiry (the sweep watches the job instead)."""
    now = now or utcnow()
    guard = guard_of(Transition.RECORD_INVOKED, job_id).attempts(attempt - 1)
    guard.set(attempts=number(attempt), started_at=time_value(now))
    guard.set(**{name: string(value) for name, value in locations.items() if value})
    if endpoint is not None:
        guard.set(lease_owner=string(endpoint.encoded()))
    return guard.remove("next_attempt_at", "lease_expires_at").moved(now).write()
