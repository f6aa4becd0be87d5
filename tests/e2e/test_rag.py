"""The RAG pipeline on real workers: index documents, then answer from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from infra.local.dev import LocalSystem
from tests.e2e.conftest import logs_of, submit
from tests.integration.tasks.test_rag import DOCUMENTS

pytestmark = pytest.mark.e2e


def test_a_question_is_answered_from_the_documents_indexed_on_the_gpu_worker(
    api: httpx.Client, wait_for: Callable[..., dict[str, Any]]
) -> None:
    built = submit(api, "embeddings.index", {"name": "e2e-support", "documents": DOCUMENTS})
    assert wait_for(built["job_id"], timeout_s=120)["status"] == "SUCCESS"
    asked = submit(
        api, "rag.answer", {"index": "e2e-support", "question": "How long do refunds take?"}
    )
    done = wait_for(asked["job_id"], timeout_s=120)
    assert done["status"] == "SUCCESS", done
    assert "five business days" in done["result"]["answer"]
    assert done["result"]["sources"][0]["doc_id"] == "refunds"
    assert done["result"]["model"] == "offload-local-extractive"


def test_an_answer_generated_on_the_sagemaker_lane_frees_the_gpu_worker_meanwhile(
    api: httpx.Client, wait_for: Callable[..., dict[str, Any]], system: LocalSystem
) -> None:
    built = submit(api, "embeddings.index", {"name": "e2e-ship", "documents": DOCUMENTS})
    assert wait_for(built["job_id"], timeout_s=120)["status"] == "SUCCESS"
    question = {"index": "e2e-ship", "question": "Where do orders ship from?"}
    asked = submit(api, "rag.answer", {**question, "generation": "sagemaker"})
    done = wait_for(asked["job_id"], timeout_s=120)
    assert done["status"] == "SUCCESS", done
    assert "Rotterdam" in done["result"]["answer"]
    assert done["result"]["model"] == "sagemaker:offload-llm"
    assert done["attempts"] == 1
    generated = api.get("/jobs", params={"task": "llm.generate"}).json()["jobs"]
    assert any(job["status"] == "SUCCESS" for job in generated)
    # The gpu worker gave the job back while the endpoint generated, then resumed it.
    assert f"job {asked['job_id']} (rag.answer) delivery of attempt 1: waits for job" in logs_of(
        system
    )
