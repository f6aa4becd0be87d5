"""A job that waits for a job it submitted: rag.answer generating on the sagemaker lane.

The parent parks (its worker is given back), the child's end wakes it, and the same attempt
resumes from its kept steps. Everything runs in process on moto: the test plays the worker
(delivering the parent's messages) and SageMaker (writing the output, notifying).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3
import pytest

import tasks
from offload.aws import celery_protocol, transitions
from offload.aws.cancel import request_cancel
from offload.aws.queues import QueuePublisher
from offload.aws.sagemaker import Notification
from offload.aws.store import JobStore
from offload.aws.writes import Write
from offload.core.context import JobContext
from offload.core.holders import Worker
from offload.core.model import Job, JobStatus, utcnow
from offload.core.moves import Transition
from offload.errors import AwsUnavailable, JobStateConflict
from offload.runtime import waiting
from offload.runtime.attempt import Attempt
from offload.runtime.outcomes import Outcome
from offload.runtime.sagemaker_lane import SageMakerLane
from offload.settings import Settings
from offload.submit.children import ChildJobs
from tests.integration import jobs
from tests.integration.tasks.test_rag import index

QUESTION = {"index": "support", "question": "How long do refunds take?"}
TGI_ANSWER = [{"generated_text": "Five business days after the return arrives [1]."}]


@pytest.fixture
def on_sagemaker(settings: Settings) -> Settings:
    return settings.model_copy(update={"rag_generation": "sagemaker"})


def deliver(settings: Settings, job_id: str, attempt: int = 1) -> Outcome:
    """One delivery of the parent's message, as a gpu worker runs it."""
    store = JobStore(settings)
    spec = tasks.catalog().get("rag.answer")
    payload = store.get(job_id).payload
    submitter = ChildJobs(tasks.catalog(), store)
    return Attempt(store, spec, job_id, attempt, payload, owner="w/1", submitter=submitter).run()


def ask(settings: Settings, payload: dict[str, Any] = QUESTION) -> str:
    return jobs.pending(JobStore(settings), "rag.answer", lane="gpu", payload=payload, caller="al")


def parked_on_generation(settings: Settings) -> tuple[str, Job]:
    """A rag.answer job of an indexed caller, parked by its first delivery on the
    llm.generate job it submitted; and that job."""
    index(settings, caller="al")
    parent_id = ask(settings)
    deliver(settings, parent_id)
    return parent_id, child_of(settings, parent_id)


def child_of(settings: Settings, parent_id: str) -> Job:
    parent = JobStore(settings).get(parent_id)
    child_id = parent.parked_on
    assert child_id is not None, parent
    return JobStore(settings).get(child_id)


def infer(settings: Settings, child: Job, output: Any = None, failure: str | None = None) -> str:
    """SageMaker ends the child's invocation: its output (or failure) and notification."""
    lane = SageMakerLane(settings, JobStore(settings), tasks.catalog())
    if failure is None:
        assert child.output_location is not None
        bucket, key = child.output_location.removeprefix("s3://").split("/", 1)
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(output).encode())
        note = Notification(
            child.job_id, "Completed", child.input_location, child.output_location, None, None
        )
    else:
        note = Notification(child.job_id, "Failed", child.input_location, None, None, failure)
    return lane.complete(note)


def as_if_due(settings: Settings, job_id: str, field: str) -> None:
    """Move a job's wait (`lease_expires_at`) or backoff (`next_attempt_at`) into the past."""
    jobs.doctor(
        JobStore(settings),
        job_id,
        f"SET {field} = :past",
        {":past": {"S": "2026-01-01T00:00:00.000000Z"}, ":gone": {"S": "SUCCESS"}},
        condition=f"attribute_exists({field}) AND #status <> :gone",
        names={"#status": "status"},
    )


def woken(drain: Callable[[str], list[str]], parent_id: str) -> list[int]:
    """The attempts of the parent's messages sent to the gpu queue."""
    sent = [celery_protocol.decode(body) for body in drain("gpu")]
    return [m["kwargs"]["attempt"] for m in sent if m["id"] == parent_id]


def test_generation_on_the_sagemaker_lane_parks_then_resumes_the_same_attempt(
    on_sagemaker: Settings, retrieved: list[str], drain: Callable[[str], list[str]]
) -> None:
    index(on_sagemaker, caller="al")
    parent_id = ask(on_sagemaker)

    parked = deliver(on_sagemaker, parent_id)
    child = child_of(on_sagemaker, parent_id)
    assert (parked.status, parked.waits_for, parked.wait_s) == (None, child.job_id, 300)
    parent = JobStore(on_sagemaker).get(parent_id)
    assert (parent.status, parent.attempts) == (JobStatus.STARTED, 1)
    # The child is llm.generate on the endpoint, the caller's, with the numbered passages.
    assert (child.task, child.status, child.caller) == ("llm.generate", JobStatus.STARTED, "al")
    assert child.parent_id == parent_id
    prompt = child.payload["prompt"]
    assert "[1] (refunds)" in prompt and prompt.endswith(
        "Question: How long do refunds take?\n\nAnswer:"
    )

    # A delivery before the child ends waits, without running the task again.
    early = deliver(on_sagemaker, parent_id)
    assert early.status is None and early.wait_s is not None and early.wait_s > 290
    assert len(retrieved) == 1

    # SageMaker answers: the child succeeds and sends the parent's message, same attempt.
    assert infer(on_sagemaker, child, TGI_ANSWER) == "success"
    assert woken(drain, parent_id) == [1]

    done = deliver(on_sagemaker, parent_id)
    assert done.status is JobStatus.SUCCESS
    job = JobStore(on_sagemaker).get(parent_id)
    assert (job.status, job.attempts) == (JobStatus.SUCCESS, 1)
    assert job.result["answer"] == TGI_ANSWER[0]["generated_text"]
    assert job.result["model"] == "sagemaker:offload-llm"
    assert job.result["sources"][0]["doc_id"] == "refunds"
    assert len(retrieved) == 1  # resumed from the kept steps
    # The message the parent sent itself at the park finds nothing left to do.
    assert deliver(on_sagemaker, parent_id).status is None


def test_a_failed_generation_fails_the_attempt_and_the_retry_submits_a_new_one(
    on_sagemaker: Settings, retrieved: list[str], drain: Callable[[str], list[str]]
) -> None:
    parent_id, first = parked_on_generation(on_sagemaker)
    # llm.generate tries twice (its own policy), then ends FAILURE and wakes the parent.
    assert infer(on_sagemaker, first, failure="CUDA out of memory") == "retried"
    assert woken(drain, parent_id) == []
    assert infer(on_sagemaker, JobStore(on_sagemaker).get(first.job_id), failure="OOM") == "failure"
    assert woken(drain, parent_id) == [1]

    failed = deliver(on_sagemaker, parent_id)
    assert failed.status is JobStatus.RETRY and failed.error is not None
    assert f"generation job {first.job_id} ended FAILURE" in failed.error.message
    # Attempt 2 submits a second generation job and parks on it.
    as_if_due(on_sagemaker, parent_id, "next_attempt_at")
    retried = deliver(on_sagemaker, parent_id, attempt=2)
    second = child_of(on_sagemaker, parent_id)
    assert retried.waits_for == second.job_id != first.job_id
    assert JobStore(on_sagemaker).get(parent_id).attempts == 2
    assert len(retrieved) == 1


def test_cancelling_a_waiting_job_revokes_it_at_once_and_cancels_what_it_waits_for(
    on_sagemaker: Settings,
) -> None:
    parent_id, child = parked_on_generation(on_sagemaker)
    store = JobStore(on_sagemaker)

    assert request_cancel(store, parent_id).status is JobStatus.REVOKED
    assert store.get(child.job_id).status is JobStatus.REVOKED
    # The inference's output, when it comes, is dropped; nothing runs the parent again.
    assert infer(on_sagemaker, child, TGI_ANSWER) == "stale"
    assert deliver(on_sagemaker, parent_id).status is None
    assert store.get(parent_id).status is JobStatus.REVOKED


def test_cancelling_the_job_waited_for_wakes_its_parent(
    on_sagemaker: Settings, drain: Callable[[str], list[str]]
) -> None:
    parent_id, child = parked_on_generation(on_sagemaker)
    assert request_cancel(JobStore(on_sagemaker), child.job_id).status is JobStatus.REVOKED
    assert woken(drain, parent_id) == [1]
    failed = deliver(on_sagemaker, parent_id)
    assert failed.status is JobStatus.RETRY and failed.error is not None
    assert "ended REVOKED" in failed.error.message


def test_a_lost_wake_up_only_delays_the_job_until_its_recheck(
    on_sagemaker: Settings, monkeypatch: pytest.MonkeyPatch, drain: Callable[[str], list[str]]
) -> None:
    settings = on_sagemaker.model_copy(update={"wait_recheck_s": 1})
    index(settings, caller="al")
    parent_id = ask(settings)
    assert deliver(settings, parent_id).wait_s == 1
    child = child_of(settings, parent_id)

    def outage(*args: Any, **kwargs: Any) -> None:
        raise AwsUnavailable("SQS", "connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(QueuePublisher, "send", outage)
        assert infer(settings, child, TGI_ANSWER) == "success"
    assert woken(drain, parent_id) == []

    # The recheck message (sent at the park, due after 1 s) resumes it all the same.
    as_if_due(settings, parent_id, "lease_expires_at")
    done = deliver(settings, parent_id)
    assert done.status is JobStatus.SUCCESS
    assert JobStore(settings).get(parent_id).result["answer"] == TGI_ANSWER[0]["generated_text"]


def test_a_child_that_ends_before_its_parent_parks_makes_the_parent_due_at_once(
    on_sagemaker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index(on_sagemaker, caller="al")
    parent_id = ask(on_sagemaker)
    real_wait_for = JobContext.wait_for

    def child_ends_first(ctx: Any, job: Job) -> Any:
        infer(on_sagemaker, JobStore(on_sagemaker).get(job.job_id), TGI_ANSWER)
        return real_wait_for(ctx, job)

    with monkeypatch.context() as patched:
        patched.setattr(JobContext, "wait_for", child_ends_first)
        parked = deliver(on_sagemaker, parent_id)
    assert parked.wait_s == 0 and parked.waits_for is not None
    assert deliver(on_sagemaker, parent_id).status is JobStatus.SUCCESS


def test_an_answer_without_generated_text_fails_the_job_saying_what_came(
    on_sagemaker: Settings,
) -> None:
    parent_id, child = parked_on_generation(on_sagemaker)
    infer(on_sagemaker, child, {"default": "response"})
    failed = deliver(on_sagemaker, parent_id)
    assert failed.status is JobStatus.FAILURE and failed.error is not None
    assert failed.error.type == "GenerationRefused"
    assert "no generated text" in failed.error.message and "default" in failed.error.message


def test_the_payload_can_choose_the_sagemaker_lane_over_the_setting(settings: Settings) -> None:
    index(settings, caller="al")
    parent_id = ask(settings, {**QUESTION, "generation": "sagemaker"})
    assert deliver(settings, parent_id).waits_for is not None


def test_a_wake_up_that_cannot_be_sent_never_fails_the_child(
    on_sagemaker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent_id, child = parked_on_generation(on_sagemaker)

    def denied(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("AccessDenied: not authorized to perform sqs:SendMessage")

    with monkeypatch.context() as patched:
        patched.setattr(QueuePublisher, "send", denied)
        assert infer(on_sagemaker, child, TGI_ANSWER) == "success"
    assert JobStore(on_sagemaker).get(child.job_id).status is JobStatus.SUCCESS


def test_a_job_cancelled_while_it_runs_is_revoked_instead_of_parked(
    on_sagemaker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index(on_sagemaker, caller="al")
    parent_id = ask(on_sagemaker)
    store = JobStore(on_sagemaker)
    real_wait_for = JobContext.wait_for

    def cancelled_first(ctx: Any, job: Job) -> Any:
        flagged = request_cancel(store, ctx.job_id)  # the worker holds it: only flagged
        assert flagged.status is JobStatus.STARTED and flagged.cancel_requested
        return real_wait_for(ctx, job)

    with monkeypatch.context() as patched:
        patched.setattr(JobContext, "wait_for", cancelled_first)
        outcome = deliver(on_sagemaker, parent_id)
    assert outcome.status is JobStatus.REVOKED
    assert store.get(parent_id).status is JobStatus.REVOKED
    # The generation it would have waited for was cancelled too: nothing is in flight.
    assert store.in_flight("sagemaker", utcnow() + timedelta(seconds=5)) == []


def test_a_cancel_after_the_wait_fell_due_cannot_race_the_resume(on_sagemaker: Settings) -> None:
    parent_id, _ = parked_on_generation(on_sagemaker)
    store = JobStore(on_sagemaker)
    as_if_due(on_sagemaker, parent_id, "lease_expires_at")
    parked = store.get(parent_id)
    # The cancel flags the job between a delivery's read and its resume: the resume is
    # refused, and the delivery revokes it instead of running it.
    store.apply(transitions.flag_cancel(parent_id))
    with pytest.raises(JobStateConflict):
        store.apply(transitions.resume(parked, Worker("w/2"), 60))
    assert deliver(on_sagemaker, parent_id).status is None
    assert store.get(parent_id).status is JobStatus.REVOKED


def test_a_park_tries_again_through_a_short_store_outage(
    on_sagemaker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index(on_sagemaker, caller="al")
    parent_id = ask(on_sagemaker)
    monkeypatch.setattr(waiting, "_PARK_PAUSES_S", (0.01, 0.01))
    real_apply = JobStore.apply
    failures = [AwsUnavailable("DynamoDB", "throttled")] * 2

    def flaky_park(self: JobStore, write: Write, **kwargs: Any) -> Any:
        if write.transition is Transition.PARK and failures:
            raise failures.pop()
        return real_apply(self, write, **kwargs)

    monkeypatch.setattr(JobStore, "apply", flaky_park)
    assert deliver(on_sagemaker, parent_id).waits_for is not None
    assert JobStore(on_sagemaker).get(parent_id).parked_on is not None
