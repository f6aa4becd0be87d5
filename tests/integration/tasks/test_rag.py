"""embeddings.index then rag.answer: answers come from the caller's own indexed documents."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.llm import LocalLlm
from offload.aws.store import JobStore
from offload.core.model import Job, JobStatus
from offload.runtime.attempt import Attempt
from offload.runtime.outcomes import Outcome
from offload.settings import Settings
from tasks import catalog, llm
from tests.integration import jobs

DOCUMENTS = [
    {
        "id": "refunds",
        "text": "Refund policy.\n\nRefunds are processed within five business days of the "
        "return reaching our warehouse. Store credit is issued at once.",
    },
    {
        "id": "shipping",
        "text": "Shipping.\n\nOrders ship from Rotterdam. Express delivery takes two days "
        "within the EU; standard delivery takes a week.",
    },
    {
        "id": "security",
        "text": "Accounts.\n\nPasswords can be reset from the login page. Two-factor "
        "authentication is required for administrators.",
    },
]


@pytest.fixture
def local_llm() -> Iterator[LocalLlm]:
    with LocalLlm() as server:
        yield server


@pytest.fixture
def with_llm(settings: Settings, local_llm: LocalLlm) -> Settings:
    return settings.model_copy(update={"llm_base_url": local_llm.base_url})


def run(settings: Settings, task: str, payload: Any, caller: str = "alice", **job: Any) -> Job:
    """Run a job's attempts in process, as a worker would, until it ends or waits."""
    store = JobStore(settings)
    spec = catalog().get(task)
    job_id = jobs.pending(store, task, lane="gpu", payload=payload, caller=caller, **job)
    attempt = 1
    while True:
        outcome: Outcome = Attempt(store, spec, job_id, attempt, payload, owner="w/1").run()
        if outcome.wait_s is not None:
            time.sleep(outcome.wait_s)  # the retry's backoff is not over: as a worker waits
            continue
        if outcome.retry_in_s is None:
            return store.get(job_id)
        attempt = outcome.attempt + 1


def index(settings: Settings, caller: str = "alice") -> Job:
    built = run(settings, "embeddings.index", {"name": "support", "documents": DOCUMENTS}, caller)
    assert built.status is JobStatus.SUCCESS, built.error
    return built


def test_an_answer_comes_from_the_indexed_document_that_holds_it(
    with_llm: Settings, local_llm: LocalLlm
) -> None:
    built = index(with_llm)
    assert built.result["documents"] == 3 and built.result["chunks"] >= 3
    done = run(
        with_llm, "rag.answer", {"index": "support", "question": "How long do refunds take?"}
    )
    assert done.status is JobStatus.SUCCESS, done.error
    assert "five business days" in done.result["answer"]
    assert done.result["sources"][0]["doc_id"] == "refunds"
    # The model was given the reranked passages, numbered, and the question.
    (request,) = local_llm.requests
    prompt = request["messages"][-1]["content"]
    assert "[1] (refunds)" in prompt and "Question: How long do refunds take?" in prompt


def test_another_callers_index_is_not_found(with_llm: Settings) -> None:
    index(with_llm, caller="alice")
    done = run(with_llm, "rag.answer", {"index": "support", "question": "Refunds?"}, caller="bob")
    assert (done.status, done.attempts) == (JobStatus.FAILURE, 1)
    assert done.error is not None and done.error.type == "IndexNotFound"


def test_a_failing_generation_retries_alone_and_keeps_the_earlier_steps(
    with_llm: Settings,
    local_llm: LocalLlm,
    monkeypatch: pytest.MonkeyPatch,
    retrieved: list[str],
) -> None:
    monkeypatch.setattr(llm, "RETRY_PAUSES_S", (0.01, 0.01))
    index(with_llm)
    # Attempt 1: the endpoint fails its three tries; attempt 2: one failure, then an answer.
    local_llm.fail_next(4)
    done = run(
        with_llm, "rag.answer", {"index": "support", "question": "Where do orders ship from?"}
    )
    assert (done.status, done.attempts) == (JobStatus.SUCCESS, 2), done.error
    assert "Rotterdam" in done.result["answer"]
    assert len(retrieved) == 1  # retrieve and rerank ran once, in attempt 1
    assert len(local_llm.requests) == 5


def test_without_a_generation_endpoint_the_job_fails_saying_so(settings: Settings) -> None:
    index(settings)
    done = run(settings, "rag.answer", {"index": "support", "question": "Refunds?"})
    assert (done.status, done.attempts) == (JobStatus.FAILURE, 1)
    assert done.error is not None and "OFFLOAD_LLM_BASE_URL" in done.error.message


def test_index_payloads_are_checked() -> None:
    spec = catalog().get("embeddings.index")
    for bad in (
        {"name": "Bad Name", "documents": DOCUMENTS},
        {"name": "ok", "documents": []},
        {"name": "ok", "documents": [DOCUMENTS[0], DOCUMENTS[0]]},
    ):
        with pytest.raises(Exception, match="invalid payload"):
            spec.parse(bad)
