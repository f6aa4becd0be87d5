from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from pydantic import BaseModel

from offload import JobContext
from offload.catalog import Catalog
from offload.inline import InlineRunner
from offload.job import Job, JobStatus, utcnow
from offload.settings import Settings
from offload.store import JobStore


class Plan(BaseModel):
    fail_times: int = 0
    sleep_s: float = 0


catalog = Catalog()


@catalog.task("i.plan", lane="inline", payload=Plan, max_attempts=3, timeout_s=0.5, backoff_s=0.01)
def plan(payload: Plan, ctx: JobContext) -> int:
    time.sleep(payload.sleep_s)
    if ctx.attempt <= payload.fail_times:
        raise RuntimeError(f"fail {ctx.attempt}")
    return ctx.attempt


def run(settings: Settings, payload: dict[str, Any]) -> Job:
    store = JobStore(settings)
    now = utcnow()
    job = Job(
        job_id=str(uuid.uuid4()),
        task="i.plan",
        lane="inline",
        status=JobStatus.PENDING,
        max_attempts=3,
        created_at=now,
        updated_at=now,
        payload=payload,
    )
    store.create(job)

    async def go() -> None:
        runner = InlineRunner(store, concurrency=2, retry_max_delay_s=0.05)
        await runner.run(catalog.get("i.plan"), job.job_id, payload)
        runner.shutdown()

    asyncio.run(go())
    return store.get(job.job_id)


def test_inline_retries_per_policy_then_succeeds(settings: Settings) -> None:
    job = run(settings, {"fail_times": 2})
    assert (job.status, job.attempts, job.result) == (JobStatus.SUCCESS, 3, 3)


def test_inline_fails_after_max_attempts(settings: Settings) -> None:
    job = run(settings, {"fail_times": 5})
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 3)
    assert job.error is not None and job.error.message == "fail 3"


def test_inline_time_limit_ends_the_attempt(settings: Settings) -> None:
    started = time.monotonic()
    job = run(settings, {"sleep_s": 2})
    assert time.monotonic() - started < 1.9 * 3  # each attempt stopped at its limit
    assert job.status is JobStatus.FAILURE
    assert job.error is not None and job.error.type == "TaskTimeout"
