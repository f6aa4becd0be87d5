"""Jobs a running task submits for steps of its own (`JobContext.submit_job`): the
`Submitter` the runtime hands a task's context. The runtime never imports this package; the
process that runs attempts (a worker, the API's inline runner) hands one in."""

from __future__ import annotations

import asyncio
from typing import Any

from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.context import JobContext
from offload.core.model import Job
from offload.submit.jobs import Jobs


class ChildJobs:
    """Submits a running job's child jobs, as the parent's caller, from `catalog`."""

    def __init__(self, catalog: Catalog, store: JobStore) -> None:
        self.catalog = catalog
        self.store = store

    def submit_child(self, parent: JobContext, step: str, task: str, payload: Any) -> Job:
        """Submit a job for step `step` of the running attempt, once: the same step of the
        same attempt finds the job it submitted before (an idempotency key of the parent's)."""
        jobs = Jobs.outside_a_request(self.catalog, self.store, parent.caller)
        key = f"offload:{parent.job_id}:{step}:{parent.attempt}"
        return asyncio.run(jobs.submit(task, payload, idempotency_key=key, parent_id=parent.job_id))
