from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from offload import JobContext, Payload
from offload.aws import celery_protocol
from offload.aws.queues import QueuePublisher
from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import Job, JobStatus
from offload.errors import AwsUnavailable
from offload.runtime.attempt import Attempt
from offload.runtime.inline import InlineRunner
from offload.settings import Settings
from tests.integration import jobs


class Plan(Payload):
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


# The same task with longer limits, for tests of waiting for a slot: the margins are then
# whole seconds, not tenths, and a loaded machine does not turn them around.
catalog.task("i.hold", lane="inline", payload=Plan, max_attempts=3, timeout_s=1.9)(plan)
catalog.task("i.brief", lane="inline", payload=Plan, max_attempts=3, timeout_s=1.5)(plan)


def pending(store: JobStore, payload: dict[str, Any], task: str = "i.plan") -> str:
    return jobs.pending(store, task, lane="inline", payload=payload)


def run_all(
    settings: Settings,
    payloads: list[dict[str, Any]],
    concurrency: int = 2,
    queue_size: int = 10,
    within_s: float | None = None,
    publisher: QueuePublisher | None = None,
    tasks: list[str] | None = None,
) -> list[Job]:
    """Run the jobs concurrently on one runner, in submission order; return them at the end.

    :param within_s: the jobs' deadline, from now (as on Lambda).
    """
    store = JobStore(settings)
    names = tasks or ["i.plan"] * len(payloads)
    ids = [pending(store, payload, task) for payload, task in zip(payloads, names, strict=True)]
    deadline = None if within_s is None else time.monotonic() + within_s

    async def go() -> None:
        runner = InlineRunner(
            store,
            publisher or QueuePublisher(settings),
            concurrency=concurrency,
            retry_max_delay_s=0.05,
            queue_size=queue_size,
        )
        runs = []
        for job_id, payload, task in zip(ids, payloads, names, strict=True):
            spec = catalog.get(task)
            runs.append(asyncio.create_task(runner.run(spec, job_id, payload, deadline)))
            await asyncio.sleep(0.05)  # keep the order in which they take slots
        await asyncio.gather(*runs)

    asyncio.run(go())
    return [store.get(job_id) for job_id in ids]


def spilled(drain: Callable[[str], list[str]]) -> dict[str, dict[str, Any]]:
    """The jobs sent to the cpu lane: {job id: message kwargs}."""
    messages = [celery_protocol.decode(body) for body in drain("cpu")]
    for message in messages:
        assert message["task"] in catalog
    return {m["id"]: m["kwargs"] for m in messages}


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
    small_limit = settings.model_copy(update={"max_result_bytes": 256 * 1024})
    nan, huge = run_all(small_limit, [{"result": "nan"}, {"result": "huge"}])
    assert (nan.status, nan.attempts) == (JobStatus.FAILURE, 1)
    assert nan.error is not None and nan.error.type == "ResultNotSerializable"
    assert (huge.status, huge.attempts) == (JobStatus.FAILURE, 1)
    assert huge.error is not None and huge.error.type == "ResultTooLarge"


def test_jobs_beyond_the_queue_spill_to_the_cpu_lane(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    # One slot and one waiting place: the third job finds the lane full.
    jobs_ = run_all(settings, [{"sleep_s": 0.3}] * 3, concurrency=1, queue_size=1)
    assert [job.status for job in jobs_] == [
        JobStatus.SUCCESS,
        JobStatus.SUCCESS,
        JobStatus.PENDING,
    ]
    assert spilled(drain) == {jobs_[2].job_id: {"payload": {"sleep_s": 0.3}, "attempt": 1}}


def test_a_job_that_cannot_end_before_the_deadline_spills_before_it_starts(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    (job,) = run_all(settings, [{}], within_s=0.3)  # the task's limit is 0.5 s
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert spilled(drain) == {job.job_id: {"payload": {}, "attempt": 1}}


def test_a_retry_that_cannot_end_before_the_deadline_spills_with_its_delay(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    # Attempt 1 fits in 0.7 s and fails after 0.3 s (well inside its 0.5 s limit); attempt 2
    # (0.5 s more) would not end in time.
    payload = {"fail_times": 1, "sleep_s": 0.3}
    (job,) = run_all(settings, [payload], within_s=0.7)
    assert (job.status, job.attempts) == (JobStatus.RETRY, 1)
    assert spilled(drain) == {job.job_id: {"payload": payload, "attempt": 2}}


def test_a_job_whose_wait_for_a_slot_ate_its_time_spills(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    # The second job may wait for the slot only 2.0 - 1.5 s (its limit) = 0.5 s; the first
    # holds it 1.0 s, well inside its own 1.9 s limit even on a loaded machine.
    first, second = run_all(
        settings,
        [{"sleep_s": 1.0}, {}],
        concurrency=1,
        within_s=2.0,
        tasks=["i.hold", "i.brief"],
    )
    assert first.status is JobStatus.SUCCESS
    assert (second.status, second.attempts) == (JobStatus.PENDING, 0)
    assert set(spilled(drain)) == {second.job_id}


def test_a_hung_task_holding_the_only_slot_does_not_hold_the_next_job_past_its_deadline(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    # The first task hangs for 5 s, far past its 0.5 s limit: its thread keeps the one slot.
    # The second job may wait for it only while it could still end before the deadline.
    started = time.monotonic()
    hung, waiting = run_all(settings, [{"sleep_s": 5}, {}], concurrency=1, within_s=1.2)
    assert time.monotonic() - started < 3  # not the 5 s the hung thread holds the slot
    assert hung.error is not None and hung.error.type == "TaskTimeout"
    assert (waiting.status, waiting.attempts) == (JobStatus.PENDING, 0)
    sent = spilled(drain)
    assert sent[waiting.job_id] == {"payload": {}, "attempt": 1}
    assert sent[hung.job_id]["attempt"] == 2  # its retry needs the slot too


class Outage(QueuePublisher):
    def send(self, *args: Any, **kwargs: Any) -> None:
        raise AwsUnavailable("SQS", "throttled, as the test asks")


def test_a_spill_that_sqs_refuses_leaves_the_job_as_it_was_and_says_so(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    (job,) = run_all(settings, [{}], within_s=0.3, publisher=Outage(settings))
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert '"InlineSpillFailed":[1.0]' in capsys.readouterr().out


def test_a_run_that_fails_in_offloads_own_code_is_handed_to_the_cpu_lane(
    settings: Settings, drain: Callable[[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Attempt) -> None:
        raise RuntimeError("a bug in offload, as the test asks")

    monkeypatch.setattr(Attempt, "begin", broken)
    (job,) = run_all(settings, [{"n": 1}])
    assert job.status is JobStatus.PENDING
    assert spilled(drain) == {job.job_id: {"payload": {"n": 1}, "attempt": 1}}
