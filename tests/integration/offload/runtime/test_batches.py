"""Batched tasks: one call for many jobs, each job settled on its own."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from offload import Batch, JobContext, Payload
from offload.aws.store import JobStore
from offload.core.catalog import Catalog
from offload.core.model import JobStatus
from offload.errors import TaskDeclarationError
from offload.runtime.batches import Delivery, run_batch
from offload.settings import Settings
from tests.integration import jobs

catalog = Catalog()
calls: list[list[str]] = []


class Word(Payload):
    word: str


@catalog.task(
    "b.upper", lane="gpu", payload=Word, max_attempts=2, batch=Batch(max_size=8), backoff_s=0
)
def upper(payloads: list[Word], ctxs: list[JobContext]) -> list[Any]:
    words = [p.word for p in payloads]
    calls.append(words)
    if "boom" in words:
        raise RuntimeError("the batch call broke on 'boom'")
    return [ValueError(f"no {w}") if w == "refused" else w.upper() for w in words]


def deliveries(store: JobStore, words: list[Any]) -> list[Delivery]:
    made = []
    for word in words:
        payload = {"word": word}
        job_id = jobs.pending(store, "b.upper", lane="gpu", payload=payload, max_attempts=2)
        made.append(Delivery(job_id, payload, attempt=1))
    return made


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    calls.clear()


def run(settings: Settings, words: list[Any]) -> tuple[list[Any], int]:
    store = JobStore(settings)
    batch = deliveries(store, words)
    report = run_batch(store, catalog.get("b.upper"), batch, owner="w/1", lease_s=60)
    assert len(report.outcomes) == len(batch)
    return [store.get(d.job_id) for d in batch], report.calls


def test_jobs_of_a_batch_share_one_call_and_keep_their_own_results(settings: Settings) -> None:
    done, n_calls = run(settings, ["a", "b", "c"])
    assert n_calls == 1 and calls == [["a", "b", "c"]]
    assert [(j.status, j.result, j.attempts) for j in done] == [
        (JobStatus.SUCCESS, "A", 1),
        (JobStatus.SUCCESS, "B", 1),
        (JobStatus.SUCCESS, "C", 1),
    ]


def test_the_job_that_breaks_the_call_fails_alone(settings: Settings) -> None:
    done, n_calls = run(settings, ["a", "b", "boom", "d", "e"])
    # Split until the breaking job runs alone: [a b | boom d e] -> [boom | d e] -> [boom].
    assert n_calls < 2 * len(done)
    by_word = {j.payload["word"]: j for j in done}
    for word in "abde":
        assert (by_word[word].status, by_word[word].result) == (JobStatus.SUCCESS, word.upper())
    boom = by_word["boom"]
    assert boom.status is JobStatus.RETRY  # its own retry policy: 2 attempts
    assert boom.error is not None and boom.error.message == "the batch call broke on 'boom'"
    assert ["boom"] in calls


def test_an_error_returned_for_one_job_fails_that_job_only(settings: Settings) -> None:
    done, n_calls = run(settings, ["a", "refused"])
    assert n_calls == 1
    assert done[0].status is JobStatus.SUCCESS
    assert done[1].status is JobStatus.RETRY
    assert done[1].error is not None and done[1].error.type == "ValueError"


def test_an_invalid_payload_fails_before_the_call(settings: Settings) -> None:
    done, _ = run(settings, ["a", 42])
    assert calls == [["a"]]
    assert done[0].status is JobStatus.SUCCESS
    assert (done[1].status, done[1].attempts) == (JobStatus.FAILURE, 1)
    assert done[1].error is not None and done[1].error.type == "InvalidPayload"


def test_a_duplicate_delivery_in_a_batch_does_not_run_twice(settings: Settings) -> None:
    store = JobStore(settings)
    (first,) = deliveries(store, ["a"])
    spec = catalog.get("b.upper")
    report = run_batch(store, spec, [first, first], owner="w/1", lease_s=60)
    assert calls == [["a"]]
    assert report.outcomes[0].status is JobStatus.SUCCESS
    assert report.outcomes[1].status is None and report.outcomes[1].busy


def test_a_batched_task_still_runs_as_a_single_job(settings: Settings) -> None:
    # The inline lane and plain deliveries call it as a batch of one.
    spec = catalog.get("b.upper")
    assert spec.call(Word(word="x"), None) == "X"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no refused"):
        spec.call(Word(word="refused"), None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lane", "batch", "message"),
    [
        ("inline", Batch(), "only cpu and gpu"),
        ("gpu", Batch(max_size=0), "max_size"),
        ("gpu", Batch(max_wait_ms=5000), "max_wait_ms"),
    ],
)
def test_batch_declarations_are_checked(lane: Any, batch: Batch, message: str) -> None:
    with pytest.raises(TaskDeclarationError, match=message):
        Catalog().task("x", lane=lane, payload=Word, timeout_s=5, batch=batch)(upper)


class Stopped(Exception):
    """Stands for the worker's soft time limit: an error of the batch, not of an input."""


def test_an_error_of_the_whole_batch_fails_every_job_without_splitting(
    settings: Settings,
) -> None:
    store = JobStore(settings)
    batch = deliveries(store, ["a", "b", "c", "d"])
    spec = catalog.get("b.upper")

    def stopped(payloads: list[Word], ctxs: list[JobContext]) -> list[Any]:
        calls.append([p.word for p in payloads])
        raise Stopped("soft time limit")

    stopping = replace(spec, fn=stopped)
    report = run_batch(store, stopping, batch, owner="w/1", lease_s=60, whole_batch=(Stopped,))
    assert report.calls == 1 and calls == [["a", "b", "c", "d"]]
    assert [store.get(d.job_id).status for d in batch] == [JobStatus.RETRY] * 4
