"""Batched tasks on real workers: jobs that arrive together share one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from infra.local.dev import LocalSystem
from tests.e2e.conftest import submit

pytestmark = pytest.mark.e2e


def test_a_cpu_worker_gathers_jobs_into_batches_and_fails_only_the_bad_one(
    api: httpx.Client, wait_for: Callable[..., dict[str, Any]]
) -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    jobs = [submit(api, "diag.shout", {"word": word}) for word in words]
    bad = submit(api, "diag.shout", {"word": "omega", "fail": True})
    done = [wait_for(job["job_id"], timeout_s=60) for job in jobs]
    failed = wait_for(bad["job_id"], timeout_s=60)

    assert [job["status"] for job in done] == ["SUCCESS"] * len(words)
    assert [job["result"]["word"] for job in done] == [word.upper() for word in words]
    # They reached the worker within its 300 ms gathering window: some shared a call.
    assert max(job["result"]["batch_size"] for job in done) >= 2
    assert failed["status"] == "FAILURE"
    assert failed["error"]["message"] == "diag.shout was asked to fail on ['omega']"


def test_the_gpu_worker_loads_its_model_before_taking_messages_and_batches_embeddings(
    api: httpx.Client, wait_for: Callable[..., dict[str, Any]], system: LocalSystem
) -> None:
    (gpu,) = [child for child in system.children if child.name.startswith("worker-gpu")]
    log = gpu.output(tail=None)
    warmed = log.find("embeddings.embed warmed up")
    taking = log.find("warmed up: taking messages")
    assert 0 <= warmed < taking, log[-3000:]

    texts = [["A man is playing a guitar."], ["Someone plays the guitar."], ["Stocks fell."]]
    jobs = [submit(api, "embeddings.embed", {"texts": t}) for t in texts]
    done = [wait_for(job["job_id"], timeout_s=120) for job in jobs]
    assert [job["status"] for job in done] == ["SUCCESS"] * 3
    assert all(len(job["result"]["vectors"][0]) == 384 for job in done)
