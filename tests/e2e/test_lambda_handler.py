"""The API's real Lambda handler under AWS's runtime client, against a local Runtime API.

The emulator (`infra/local/lambda_emulator.py`) plays Lambda: it hands invocations to awslambdaric
running `functions.api.main.handler`, records when the response was posted, and counts an
invocation complete only once the handler's internal extension is back at `next` too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.local.dev import LocalSystem
from infra.local.lambda_emulator import Invocation, LambdaEmulator
from offload.aws.store import JobStore
from offload.core.model import Job, JobStatus
from tests.lambda_events import http_event, jwt_claims, response_json

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def function(
    system: LocalSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LambdaEmulator]:
    """The API function, one execution environment for the module's tests."""
    env = system.env()
    env.update(OFFLOAD_AUTH="jwt", OFFLOAD_INLINE_RETRY_MAX_DELAY_S="0.1")
    emulator = LambdaEmulator(
        "functions.api.main.handler",
        env=env,
        timeout_s=30,
        cwd=str(ROOT),
        log_path=tmp_path_factory.mktemp("lambda") / "function.log",
    )
    with emulator:
        assert emulator.extensions == ["offload-inline"]
        yield emulator


@pytest.fixture(scope="module")
def store(system: LocalSystem) -> JobStore:
    return JobStore(system.settings())


def post_job(
    function: LambdaEmulator, task: str, payload: dict[str, Any], timeout_s: float = 30
) -> tuple[Invocation, dict[str, Any]]:
    event = http_event(
        "POST",
        "/jobs",
        json_body={"task": task, "payload": payload},
        claims=jwt_claims("alice"),
    )
    invocation = function.invoke(event, timeout_s=timeout_s)
    response = invocation.wait_response(30)
    assert response["statusCode"] == 202, (response, function.output())
    job: dict[str, Any] = response_json(response)
    return invocation, job


def ended(store: JobStore, job_id: str, timeout_s: float = 60) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job.status.terminal:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end: {store.get(job_id)}")


def test_the_response_is_posted_long_before_the_nap_ends_and_the_invocation_outlasts_it(
    function: LambdaEmulator, store: JobStore
) -> None:
    invocation, job = post_job(function, "diag.nap", {"seconds": 2})
    assert invocation.response_at is not None
    answered_in = invocation.response_at - invocation.invoked_at
    assert answered_in < 1.0, answered_in  # the nap alone is 2 s

    completed = invocation.wait_complete(30)
    seen = store.get(job["job_id"])  # read at once: the environment may now freeze
    assert not invocation.timed_out
    assert seen.status is JobStatus.SUCCESS, (seen, function.output())
    assert seen.result == {"slept_s": 2}
    assert completed - invocation.response_at >= 1.5


def test_an_inline_job_that_would_outlive_the_invocation_runs_on_the_cpu_lane(
    function: LambdaEmulator, store: JobStore
) -> None:
    # diag.nap may take 12 s; a 5 s invocation cannot hold it, so it goes to a cpu worker.
    invocation, job = post_job(function, "diag.nap", {"seconds": 2}, timeout_s=5)
    invocation.wait_complete(10)
    completed_wall = datetime.now(UTC)
    assert not invocation.timed_out
    done = ended(store, job["job_id"])
    assert (done.status, done.result) == (JobStatus.SUCCESS, {"slept_s": 2})
    # It napped after the invocation was over: on a worker, not in the function.
    assert done.finished_at is not None and done.finished_at > completed_wall


def test_a_crash_in_an_inline_task_is_recorded_as_failure(
    function: LambdaEmulator, store: JobStore
) -> None:
    invocation, job = post_job(function, "diag.nap", {"seconds": 0.2, "crash": True})
    invocation.wait_complete(30)
    failed = store.get(job["job_id"])
    assert failed.status is JobStatus.FAILURE
    assert failed.error is not None
    assert failed.error.type == "RuntimeError"
    assert "crashed as asked" in failed.error.message


def test_callers_see_only_their_own_jobs_through_the_function(function: LambdaEmulator) -> None:
    _, job = post_job(function, "diag.echo", {"for": "alice"})

    def get(sub: str | None) -> dict[str, Any]:
        event = http_event(
            "GET", f"/jobs/{job['job_id']}", claims=None if sub is None else jwt_claims(sub)
        )
        response: dict[str, Any] = function.invoke(event).wait_response(30)
        return response

    assert get("alice")["statusCode"] == 200
    assert get("bob")["statusCode"] == 404
    assert get(None)["statusCode"] == 401
