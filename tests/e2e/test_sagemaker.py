"""The sagemaker lane on the local stack: a job submitted over HTTP is invoked on moto's
SageMaker runtime, notified through SNS and the completions queue, and settled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import submit

pytestmark = pytest.mark.e2e


def test_a_sagemaker_job_reaches_success_through_its_notification(
    api: httpx.Client, wait_for: Callable[..., dict[str, Any]]
) -> None:
    job = submit(api, "llm.generate", {"prompt": "Say hi"})
    assert job["lane"] == "sagemaker"
    done = wait_for(job["job_id"], timeout_s=60)
    assert done["status"] == "SUCCESS", done
    # The local stack's `llm` endpoint answers as a TGI container would (infra/local/llm.py).
    (generated,) = done["result"]
    assert isinstance(generated["generated_text"], str) and generated["generated_text"]
