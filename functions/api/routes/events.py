"""`GET /jobs/{id}/events`: a job's status and progress as Server-Sent Events, until it ends.

For uvicorn and container deployments. Behind API Gateway and Mangum a response is
buffered whole and must end within the function's timeout: there each stream ends after
`LAMBDA_STREAM_S` (one long poll), and the client reconnects with its last id.

Each change is one `job` event whose id is the job's `updated_at`; the end is an `end`
event holding the final job, after which the stream closes. A client that reconnects with
`Last-Event-ID` gets only newer changes, and an `end` at once for a job that has ended, so
an EventSource stops reconnecting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from functions.api.schemas import JobView, error_responses
from offload.core.model import Job, isoformat
from offload.fastapi import JobsDep
from offload.web.integration import serving

router = APIRouter(tags=["jobs"])

# How long one long poll of the store lasts; a quiet stream sends a comment this often.
POLL_S = 15.0
# One connection's life: proxies end idle or endless ones; the client resumes by its id.
STREAM_S = 900.0
# On Lambda (the response goes out only when it ends): well inside API Gateway's 30 s.
LAMBDA_STREAM_S = 20.0


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`job` events as the job changes, then one `end` event",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(404),
    },
)
async def job_events(
    job_id: str,
    jobs: JobsDep,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """Server-Sent Events of the job's changes until it ends (404 for another's job)."""
    job = await jobs.get(job_id)  # before the stream starts: a 404 is still possible
    return StreamingResponse(
        _events(jobs, job, last_event_id),
        media_type="text/event-stream",
        # No caching; and nginx-style proxies must not buffer the stream.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(jobs: JobsDep, job: Job, last_sent: str | None) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + (LAMBDA_STREAM_S if serving.get() is not None else STREAM_S)
    yield "retry: 1000\n\n"
    while True:
        stamp = isoformat(job.updated_at)
        if job.status.terminal:
            yield _event("end", stamp, job, jobs)
            return
        if stamp != last_sent:
            yield _event("job", stamp, job, jobs)
            last_sent = stamp
        if loop.time() >= ends_at:
            return  # the client reconnects with the last id
        latest = await jobs.wait(job.job_id, max(0.1, min(POLL_S, ends_at - loop.time())))
        if latest.updated_at == job.updated_at:
            yield ": still running\n\n"  # keeps idle connections open through proxies
        job = latest


def _event(name: str, stamp: str, job: Job, jobs: JobsDep) -> str:
    view = JobView.of(job, jobs.store.settings)
    data = json.dumps(view.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {stamp}\nevent: {name}\ndata: {data}\n\n"
