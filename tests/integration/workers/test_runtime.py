from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from time import sleep as real_sleep
from typing import Any

import boto3
import pytest

from offload import JobContext, Payload
from offload.aws import celery_protocol, transitions
from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import JobError, JobStatus, utcnow
from offload.runtime.claiming import claim
from offload.settings import Settings
from tests.integration import jobs
from workers.runtime import Runtime


class Count(Payload):
    n: int


calls: list[tuple[str, int]] = []
catalog = Catalog()


@catalog.task("t.ok", lane="cpu", payload=Count, max_attempts=3, backoff_s=1)
def ok(payload: Count, ctx: JobContext) -> dict[str, int]:
    calls.append((ctx.job_id, ctx.attempt))
    ctx.progress(50, "half")
    return {"double": payload.n * 2}


@catalog.task("t.boom", lane="gpu", payload=Count, max_attempts=2, backoff_s=1)
def boom(payload: Count, ctx: JobContext) -> None:
    calls.append((ctx.job_id, ctx.attempt))
    raise ValueError(f"boom {ctx.attempt}")


@pytest.fixture
def runtime(settings: Settings) -> Runtime:
    calls.clear()
    return Runtime(settings)


def pending(store: JobStore, task: str, payload: Any) -> str:
    spec = catalog.get(task)
    return jobs.pending(
        store, task, lane=spec.lane, payload=payload, max_attempts=spec.max_attempts
    )


def test_success_records_result_and_progress(runtime: Runtime) -> None:
    job_id = pending(runtime.store, "t.ok", {"n": 21})
    outcome = runtime.execute(catalog.get("t.ok"), job_id, {"n": 21}, 1, "w/1")
    assert outcome.status is JobStatus.SUCCESS
    job = runtime.store.get(job_id)
    assert job.result == {"double": 42}
    assert job.progress is not None and job.progress.message == "half"


def test_a_duplicate_delivery_does_not_run_the_task_again(runtime: Runtime) -> None:
    job_id = pending(runtime.store, "t.ok", {"n": 1})
    runtime.execute(catalog.get("t.ok"), job_id, {"n": 1}, 1, "w/1")
    again = runtime.execute(catalog.get("t.ok"), job_id, {"n": 1}, 1, "w/1")
    assert again.status is None
    assert calls == [(job_id, 1)]


def test_failure_is_retried_through_a_delayed_sqs_message_then_fails(
    runtime: Runtime, drain: Callable[[str], list[str]]
) -> None:
    spec = catalog.get("t.boom")
    job_id = pending(runtime.store, "t.boom", {"n": 1})
    first = runtime.execute(spec, job_id, {"n": 1}, 1, "w/1")
    assert first.status is JobStatus.RETRY and first.retry_in_s is not None
    job = runtime.store.get(job_id)
    assert job.status is JobStatus.RETRY and job.next_attempt_at is not None
    assert job.error is not None and job.error.message == "boom 1"
    assert first.retry_in_s <= 1.0  # full jitter under backoff_s * 2**0
    time.sleep(first.retry_in_s + 0.5)  # the message is invisible for its SQS delay
    (body,) = drain("gpu")
    message = celery_protocol.decode(body)
    assert message["id"] == job_id and message["kwargs"]["attempt"] == 2
    last = runtime.execute(spec, job_id, message["kwargs"]["payload"], 2, "w/1")
    assert last.status is JobStatus.FAILURE
    job = runtime.store.get(job_id)
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 2)
    assert job.error is not None and (job.error.type, job.error.message) == ("ValueError", "boom 2")
    assert drain("gpu") == []


def test_invalid_payload_fails_at_once_without_retry(
    runtime: Runtime, drain: Callable[[str], list[str]]
) -> None:
    job_id = pending(runtime.store, "t.ok", {"n": 1})
    outcome = runtime.execute(catalog.get("t.ok"), job_id, {"n": "not a number"}, 1, "w/1")
    assert outcome.status is JobStatus.FAILURE
    job = runtime.store.get(job_id)
    assert job.error is not None and job.error.type == "InvalidPayload"
    assert "payload.n" in job.error.message
    assert calls == [] and drain("cpu") == []


def test_celery_task_runs_the_runtime(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import app as worker_app

    celery_app = worker_app.create_app(settings, catalog)
    monkeypatch.setattr(worker_app, "runtime_for", lambda _s: Runtime(settings))
    calls.clear()
    job_id = pending(JobStore(settings), "t.ok", {"n": 2})
    celery_app.tasks["t.ok"].apply(kwargs={"payload": {"n": 2}, "attempt": 1}, task_id=job_id)
    assert JobStore(settings).get(job_id).result == {"double": 4}
    assert celery_app.tasks["t.ok"].soft_time_limit == 60.0
    assert celery_app.amqp.router.route({}, "t.boom")["queue"].name == "gpu"


def test_aws_outage_leaves_the_message_for_a_later_delivery(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import Reject

    from offload.errors import AwsUnavailable
    from workers import app as worker_app

    class Down:
        def execute(self, *args: Any) -> None:
            raise AwsUnavailable("DynamoDB", "EndpointConnectionError")

    celery_app = worker_app.create_app(settings, catalog)
    monkeypatch.setattr(worker_app, "runtime_for", lambda _s: Down())
    result = celery_app.tasks["t.ok"].apply(kwargs={"payload": {"n": 1}, "attempt": 1}, task_id="j")
    # Celery's trace turns Reject into a rejected delivery: not acked, not requeued at once
    assert result.state == "REJECTED"
    assert isinstance(result.result, Reject) and result.result.requeue is False
    queues = celery_app.conf.broker_transport_options["predefined_queues"]
    # kombu's backoff policy would crash the worker on a requeue (see workers/app.py)
    assert all("backoff_policy" not in queue for queue in queues.values())


def test_a_retry_due_after_sqs_s_longest_delay_is_sent_again_in_steps(
    runtime: Runtime, settings: Settings
) -> None:
    job_id = pending(runtime.store, "t.ok", {"n": 1})
    claim(runtime.store, job_id, 1, "w/1", 30, 3)
    runtime.store.apply(
        transitions.retry(job_id, 1, JobError(type="E", message="m"), utcnow() + timedelta(hours=1))
    )
    # the retry's message, delayed 15 minutes (SQS's most), arrives 45 minutes early
    outcome = runtime.execute(catalog.get("t.ok"), job_id, {"n": 1}, 2, "w/2")
    assert outcome.status is None and outcome.wait_s is not None and outcome.wait_s > 3500
    assert calls == []  # not run early
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=settings.queue_url("cpu"), AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"  # sent again, 15 minutes nearer
    assert runtime.store.get(job_id).status is JobStatus.RETRY


def outage_then_back(
    monkeypatch: pytest.MonkeyPatch,
    store: JobStore,
    method: str,
    failures: int,
    landed: bool = False,
) -> list[float]:
    """The store's `<method>` transition fails `failures` times as a store outage (`landed`:
    the write was done each time, only its answer lost), then works; the pauses between
    tries are recorded instead of slept."""
    from offload.aws.writes import Write
    from offload.core.moves import Transition
    from offload.errors import AwsUnavailable
    from offload.runtime import attempt

    real = store.apply
    left = [failures]

    def flaky(write: Write, **kwargs: Any) -> Any:
        if left[0] and write.transition is Transition(method):
            left[0] -= 1
            if landed:
                real(write, **kwargs)
            raise AwsUnavailable("DynamoDB", "503")
        return real(write, **kwargs)

    pauses: list[float] = []
    monkeypatch.setattr(store, "apply", flaky)
    monkeypatch.setattr(attempt.time, "sleep", pauses.append)  # type: ignore[attr-defined]
    return pauses


@pytest.mark.parametrize("landed", [False, True], ids=["refused", "done-unanswered"])
@pytest.mark.parametrize(("task", "method"), [("t.ok", "succeed"), ("t.boom", "retry")])
def test_a_finished_attempt_is_recorded_through_a_store_outage(
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    drain: Callable[[str], list[str]],
    task: str,
    method: str,
    landed: bool,
) -> None:
    job_id = pending(runtime.store, task, {"n": 2})
    pauses = outage_then_back(monkeypatch, runtime.store, method, failures=3, landed=landed)
    outcome = runtime.execute(catalog.get(task), job_id, {"n": 2}, 1, "w/1")
    assert outcome.status is (JobStatus.SUCCESS if task == "t.ok" else JobStatus.RETRY)
    assert runtime.store.get(job_id).status is outcome.status
    assert calls == [(job_id, 1)]  # the body ran once; only its end was written again
    assert len(pauses) == 3 and all(0 <= p <= 10 for p in pauses)
    lane = catalog.get(task).lane
    # The retry's message is invisible for its delay (time.sleep is the recorder here).
    real_sleep((outcome.retry_in_s or 0) + 0.5)
    # A RETRY is queued once its write is known, even when the first try had landed.
    assert len(drain(lane)) == (1 if method == "retry" else 0)


def test_past_its_patience_an_outage_leaves_the_message(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offload.errors import AwsUnavailable

    monkeypatch.setattr(
        runtime.store,
        "settings",
        runtime.store.settings.model_copy(update={"worker_settle_patience_s": 0.0}),
    )
    job_id = pending(runtime.store, "t.ok", {"n": 2})
    outage_then_back(monkeypatch, runtime.store, "succeed", failures=1)
    with pytest.raises(AwsUnavailable):
        runtime.execute(catalog.get("t.ok"), job_id, {"n": 2}, 1, "w/1")
    assert runtime.store.get(job_id).status is JobStatus.STARTED  # its lease lapses, then
