"""`/jobs`: submit a job, read one (optionally long-polling), list the caller's jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from functions.api.schemas import JobPage, JobView, SubmitJob, error_responses
from offload.core.model import JobStatus
from offload.fastapi import JobsDep

router = APIRouter(tags=["jobs"])

MAX_WAIT_S = 20  # API Gateway ends a request at 30 s


@router.post("/jobs", status_code=202, response_model=JobView, responses=error_responses(409, 429))
async def submit_job(body: SubmitJob, jobs: JobsDep, response: Response) -> JobView:
    """Submit a job; it runs in its task's lane. 202 with the job and its `Location`."""
    job = await jobs.submit(body.task, body.payload, idempotency_key=body.idempotency_key)
    response.headers["Location"] = f"/jobs/{job.job_id}"
    return JobView.of(job, jobs.store.settings)


@router.get("/jobs/{job_id}", response_model=JobView, responses=error_responses(404))
async def get_job(
    job_id: str,
    jobs: JobsDep,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for a change (long poll)")
    ] = 0,
) -> JobView:
    """The job; with `wait`, answers as soon as it changes or after `wait` seconds."""
    job = await (jobs.wait(job_id, wait) if wait else jobs.get(job_id))
    return JobView.of(job, jobs.store.settings)


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    jobs: JobsDep,
    status: JobStatus | None = None,
    task: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> JobPage:
    """The caller's jobs, newest first, filtered by status and task."""
    page, next_cursor = await jobs.list(limit=limit, cursor=cursor, status=status, task=task)
    return JobPage(
        jobs=[JobView.of(job, jobs.store.settings) for job in page], next_cursor=next_cursor
    )


@router.post(
    "/jobs/{job_id}/cancel",
    status_code=202,
    response_model=JobView,
    responses=error_responses(404, 409),
)
async def cancel_job(job_id: str, jobs: JobsDep) -> JobView:
    """Cancel a job: REVOKED at once if it has not started; a running one is flagged
    (`cancel_requested`) and stops at its next progress report or worker heartbeat.
    409 when it has already ended."""
    return JobView.of(await jobs.cancel(job_id), jobs.store.settings)
