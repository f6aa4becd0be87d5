"""Jobs stuck STARTED past their time limit: the sweep counts them for an alarm, and
`offload review` lists them.

A worker's hard time limit ends any task that overruns, and a lost worker's job is taken
over once its lease lapses and its message comes back. A job still STARTED well past its
limit therefore means that machinery failed: its message is gone (purged, or dead-lettered
while the job looked busy), or no worker consumes its lane.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import Job, JobStatus, utcnow
from offload.errors import UnknownTask
from offload.settings import QueueLane, Settings

# A task no longer in the catalog is judged by this limit.
_UNKNOWN_TASK_LIMIT_S = 3600.0


def overdue_after_s(job: Job, catalog: Catalog, settings: Settings) -> float:
    """How long after its start a running attempt of `job` is overdue: its time limit, the
    hard limit's grace, and a lease for its takeover to happen."""
    try:
        limit = catalog.get(job.task).timeout_s
    except UnknownTask:
        limit = _UNKNOWN_TASK_LIMIT_S
    return limit + settings.hard_limit_grace_s + settings.lease_s


def stuck_jobs(
    store: JobStore,
    catalog: Catalog,
    lane: QueueLane,
    *,
    now: datetime | None = None,
    limit: int = 500,
) -> list[Job]:
    """The jobs of a queue lane STARTED past their time limit with nothing to take them
    over, the longest unchanged first.

    A job whose lease is live is not stuck (its worker renews it, or it was just resumed).
    A job parked while a job of its own runs (offload.runtime.waiting) is stuck only when its
    recheck is long overdue: the message that would resume it is gone."""
    now = now or utcnow()
    settings = store.settings
    # Nothing younger than the shortest possible overrun can be stuck: skip it in the query.
    unchanged_since = now - timedelta(seconds=settings.hard_limit_grace_s + settings.lease_s)
    stuck = []
    for job in store.in_flight(lane, unchanged_since, limit=limit, status=JobStatus.STARTED):
        lease = job.lease_expires_at
        if job.parked_on is not None:
            overdue = timedelta(seconds=settings.wait_recheck_s + settings.lease_s)
            if lease is not None and lease < now - overdue:
                stuck.append(job)
            continue
        if lease is not None and lease > now:
            continue
        started = job.started_at or job.updated_at
        if (now - started).total_seconds() > overdue_after_s(job, catalog, settings):
            stuck.append(job)
    return stuck
