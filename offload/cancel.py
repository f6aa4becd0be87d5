"""Cancelling a job: at once when it has not started, cooperatively while it runs.

A PENDING or RETRY job becomes REVOKED in one conditional write, so no delivery can start
it afterwards. A STARTED job is flagged; its task learns at its next progress report (the
report fails with `JobRevoked`), or its worker's heartbeat stops it, whichever comes first.
"""

from __future__ import annotations

from offload import items
from offload.errors import JobStateConflict
from offload.job import Job, JobStatus, utcnow
from offload.store import JobStore

_NOT_STARTED = frozenset({JobStatus.PENDING, JobStatus.RETRY})


def request_cancel(store: JobStore, job_id: str) -> Job:
    """Revoke the job, or flag it if it runs; `JobStateConflict` if it has already ended."""
    while True:
        try:
            return store.move(
                job_id,
                JobStatus.REVOKED,
                attempts=None,
                sources=_NOT_STARTED,
                sets={"finished_at": items.timestamp(utcnow())},
                removes=("next_attempt_at",),
                terminal=True,
            )
        except JobStateConflict as conflict:
            current = conflict.current
            if current is None or current.status is not JobStatus.STARTED:
                raise  # gone, or ended: nothing to cancel
        try:
            return _flag(store, job_id)
        except JobStateConflict as conflict:
            if conflict.current is None or conflict.current.status.terminal:
                raise
            # It moved back to RETRY between the two writes: revoke it from there.


def revoke_running(store: JobStore, job_id: str, attempt: int) -> Job:
    """End a running attempt that obeyed a cancel request as REVOKED."""
    return store.move(
        job_id,
        JobStatus.REVOKED,
        attempts=attempt,
        sources=frozenset({JobStatus.STARTED}),
        sets={"finished_at": items.timestamp(utcnow())},
        terminal=True,
    )


def _flag(store: JobStore, job_id: str) -> Job:
    now = items.timestamp(utcnow())
    item = store.write(
        job_id,
        "be flagged for cancellation",
        condition="#status = :started",
        values={":started": {"S": JobStatus.STARTED.value}, ":yes": {"BOOL": True}, ":now": now},
        update="SET cancel_requested = :yes, updated_at = :now",
    )
    assert item is not None
    return items.from_item(item)
