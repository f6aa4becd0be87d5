"""The RAG pipeline on real workers: index documents, then answer from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import submit
from tests.integration.test_rag import DOCUMENTS

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
