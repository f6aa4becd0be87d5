"""Request and response bodies of the API (DESIGN.md, Contracts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offload.aws import claims
from offload.core.model import Job, JobError, JobStatus, Lane, PastRun, Progress
from offload.settings import Settings


class ErrorDetail(BaseModel):
    """What went wrong: a stable `type` to branch on, a message for people, and details
    (for a 422, `[{"field", "message"}]` naming each refused field)."""

    type: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error response's body."""

    error: ErrorDetail


_ERRORS = {
    401: "no caller could be told: send Authorization: Bearer <token>",
    403: "the caller may not do this (operators only)",
    404: "no such job, or not the caller's",
    409: "the job's state, or the idempotency key's first request, does not allow it",
    413: "the payload (or the request body) is over the limit the message states",
    422: "the request is invalid: each detail names a field and the reason",
    429: "the caller has as many jobs in flight as it may: wait for Retry-After seconds",
    503: "AWS could not be reached or refused to serve: retry after Retry-After seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the error body."""
    return {status: {"model": ErrorBody, "description": _ERRORS[status]} for status in statuses}


class SubmitJob(BaseModel):
    """`POST /jobs`."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=128, description="a task name from GET /tasks")
    payload: dict[str, Any] = Field(default_factory=dict, description="the task's payload")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the same key from the same caller returns the existing job",
    )


class ResultDownload(BaseModel):
    """Where to fetch a result too large for the job record: a presigned GET URL."""

    url: str = Field(description="presigned: GET it without credentials before expires_at")
    bytes: int = Field(description="the result's size as JSON")
    expires_at: datetime


class JobView(BaseModel):
    """A job as clients see it. A result larger than the job record holds is `null` in
    `result` and is fetched from `result_download`'s short-lived URL instead."""

    job_id: str
    task: str
    lane: Lane
    status: JobStatus
    attempts: int
    max_attempts: int
    progress: Progress | None
    result: Any
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    next_attempt_at: datetime | None
    cancel_requested: bool
    history: list[PastRun]
    result_download: ResultDownload | None = None

    @classmethod
    def of(cls, job: Job, settings: Settings) -> JobView:
        """The view of a stored job; a claimed result becomes a presigned download."""
        view = cls.model_validate(job.model_dump())
        download = claims.download(settings, job)
        if download is not None:
            view.result = None
            view.result_download = ResultDownload(
                url=download.url, bytes=download.bytes, expires_at=download.expires_at
            )
        return view


class JobPage(BaseModel):
    """`GET /jobs`: newest first; pass `next_cursor` as `cursor` for the next page."""

    jobs: list[JobView]
    next_cursor: str | None


class TaskView(BaseModel):
    """A catalog entry."""

    name: str
    lane: Lane
    description: str
    payload_schema: dict[str, Any]
    max_attempts: int
    timeout_s: float
    backoff_s: float
    backoff_max_s: float


class TaskList(BaseModel):
    """`GET /tasks`."""

    tasks: list[TaskView]


class Health(BaseModel):
    """`GET /healthz`."""

    status: str = "ok"
