from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from pydantic import BaseModel

from offload import JobContext
from offload.catalog import Catalog
from offload.inline import InlineRunner
from offload.job import Job, JobStatus
from offload.settings import Settings
from offload.store import JobStore
from tests.integration import jobs


class Plan(BaseModel):
    fail_times: int = 0
    sleep_s: float = 0
    raise_timeout: bool = False
    result: str = "attempt"


catalog = Catalog()


@catalog.task("i.plan", lane="inline", payload=Plan, max_attempts=3, timeout_s=0.5, backoff_s=0.01)
def plan(payload: Plan, ctx: JobContext) -> Any:
    time.sleep(payload.sleep_s)
    if payload.raise_timeout:
        raise TimeoutError("the webhook's server did not answer")
    if ctx.attempt <= payload.fail_times:
        raise RuntimeError(f"fail {ctx.attempt}")
    if payload.result == "nan":
        return {"score": math.nan}
    if payload.result == "huge":
        return "x" * (300 * 1024)
    return ctx.attempt


def pending(store: JobStore, payload: dict[str, Any]) -> str:
    return jobs.pending(store, "i.plan", lane="inline", payload=payload)


def run_all(settings: Settings, payloads: list[dict[str, Any]], concurrency: int = 2) -> list[Job]:
    """Run the jobs concurrently on one runner, in submission order; return them at the end."""
    store = JobStore(settings)
    ids = [pending(store, payload) for payload in payloads]

    async def go() -> None:
        runner = InlineRunner(store, concurrency=concurrency, retry_max_delay_s=0.05)
        spec = catalog.get("i.plan")
        runs = []
        for job_id, payload in zip(ids, payloads, strict=True):
            runs.append(asyncio.create_task(runner.run(spec, job_id, payload)))
            await asyncio.sleep(0.05)  # keep the order in which they take slots
        await asyncio.gather(*runs)

    asyncio.run(go())
    return [store.get(job_id) for job_id in ids]


def run(settings: Settings, payload: dict[str, Any]) -> Job:
    return run_all(settings, [payload])[0]


def test_inline_retries_per_policy_then_succeeds(settings: Settings) -> None:
    job = run(settings, {"fail_times": 2})
    assert (job.status, job.attempts, job.result) == (JobStatus.SUCCESS, 3, 3)


def test_inline_fails_after_max_attempts(settings: Settings) -> None:
    job = run(settings, {"fail_times": 5})
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 3)
    assert job.error is not None and job.error.message == "fail 3"


def test_inline_time_limit_ends_the_attempt(settings: Settings) -> None:
    job = run(settings, {"sleep_s": 2})
    assert job.status is JobStatus.FAILURE
    assert job.error is not None and job.error.type == "TaskTimeout"


def test_a_timeout_raised_by_the_task_is_its_own_error(settings: Settings) -> None:
    job = run(settings, {"raise_timeout": True})
    assert job.error is not None
    assert (job.error.type, job.error.message) == (
        "TimeoutError",
        "the webhook's server did not answer",
    )


def test_an_overrunning_task_does_not_eat_the_next_jobs_time(settings: Settings) -> None:
    # One slot: the overrunning thread holds it until it really ends, and the next job's
    # limit starts only once that job has a thread of its own.
    stuck, quick = run_all(settings, [{"sleep_s": 1.2}, {"sleep_s": 0.1}], concurrency=1)
    assert stuck.error is not None and stuck.error.type == "TaskTimeout"
    assert (quick.status, quick.result) == (JobStatus.SUCCESS, 1)


def test_results_that_cannot_be_stored_fail_the_job_at_once(settings: Settings) -> None:
    nan, huge = run_all(settings, [{"result": "nan"}, {"result": "huge"}])
    assert (nan.status, nan.attempts) == (JobStatus.FAILURE, 1)
    assert nan.error is not None and nan.error.type == "ResultNotSerializable"
    assert (huge.status, huge.attempts) == (JobStatus.FAILURE, 1)
    assert huge.error is not None and huge.error.type == "ResultTooLarge"
