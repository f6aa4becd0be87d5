"""Cancelling a job: at once when it has not started, cooperatively while it runs.

A PENDING or RETRY job becomes REVOKED in one conditional write, so no delivery can start
it afterwards. A STARTED job is flagged; its task learns at its next progress report (the
report fails with `JobRevoked`), or its worker's heartbeat stops it, whichever comes first.
A started job that no worker holds (an inference on an endpoint, or a job parked while a
job of its own runs) is REVOKED at once; a job waiting for it is woken.
"""

from __future__ import annotations

from offload.aws import transitions
from offload.aws.store import JobStore
from offload.aws.wake import wake_parent
from offload.core.holders import ParkedOn
from offload.core.model import Job, JobStatus
from offload.errors import JobNotFound, JobStateConflict


def request_cancel(store: JobStore, job_id: str) -> Job:
    """Revoke the job, or flag it if it runs; `JobStateConflict` if it has already ended."""
    while True:
        try:
            revoked = store.apply(transitions.revoke(job_id))
            wake_parent(store, revoked)
            return revoked
        except JobStateConflict as conflict:
            current = conflict.current
            if current is None or current.status is not JobStatus.STARTED:
                raise  # gone, or ended: nothing to cancel
        try:
            flagged = store.apply(transitions.flag_cancel(job_id))
        except JobStateConflict as conflict:
            if conflict.current is None or conflict.current.status.terminal:
                raise
            # It moved back to RETRY between the two writes: revoke it from there.
            continue
        child_id = flagged.parked_on
        if child_id is None and flagged.lane != "sagemaker":
            return flagged  # its worker stops it
        return revoke_unheld(store, flagged, child_id)


def revoke_unheld(store: JobStore, job: Job, child_id: str | None) -> Job:
    """A started job no worker holds: parked while a job of its own runs
    (offload.runtime.waiting), or an inference on an endpoint, which cannot be stopped. It is
    REVOKED now (a late result is dropped), and the job it waits for is cancelled too."""
    try:
        # A parked job only while still parked: once resumed, its worker stops it.
        holder = ParkedOn(child_id) if child_id is not None else None
        revoked = store.apply(transitions.revoke_running(job.job_id, job.attempts, holder))
    except JobStateConflict as conflict:
        # Resumed or settled meanwhile: a resumed one stops at its next report or beat.
        return conflict.current or job
    wake_parent(store, revoked)
    if child_id is not None:
        try:
            request_cancel(store, child_id)
        except (JobStateConflict, JobNotFound):
            pass  # it ended already
    return revoked
