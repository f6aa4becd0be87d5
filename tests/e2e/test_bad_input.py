"""Large and over-large payloads through the real processes, and what their logs keep."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from infra.local.dev import LocalSystem
from offload.settings import Settings
from tests.e2e.conftest import submit

pytestmark = pytest.mark.e2e
Wait = Callable[..., dict[str, Any]]
KIB, MIB = 1024, 1024 * 1024


def blob(size: int, marker: str) -> str:
    """`size` characters that start with `marker` (to look for in the logs later)."""
    return (marker + "-" + "0123456789abcdef" * (size // 16 + 1))[:size]


@pytest.mark.parametrize("size", [300 * KIB, 5 * MIB], ids=["300KiB", "5MiB"])
def test_a_large_payload_and_its_large_result_round_trip_through_a_worker(
    api: httpx.Client, wait_for: Wait, system: LocalSystem, size: int
) -> None:
    marker = f"PAYLOAD-{uuid.uuid4().hex}"
    data = blob(size, marker)
    job = submit(api, "diag.digest", {"data": data, "echo": True})
    done = wait_for(job["job_id"], timeout_s=180)
    assert (done["status"], done["lane"], done["result"]) == ("SUCCESS", "cpu", None)
    download = done["result_download"]
    # The URL is presigned: no credentials, no client of ours, just GET.
    fetched = httpx.get(download["url"], timeout=60)
    assert fetched.status_code == 200
    assert len(fetched.content) == download["bytes"]
    result = fetched.json()
    assert result["data"] == data
    assert result["sha256"] == hashlib.sha256(data.encode()).hexdigest()
    assert marker not in every_log(system)


def test_a_payload_over_the_maximum_is_413_and_nothing_is_kept(api: httpx.Client) -> None:
    limit = Settings().max_payload_bytes
    before = newest_job_ids(api)
    over = api.post("/jobs", json={"task": "diag.digest", "payload": {"data": "x" * limit}})
    assert over.status_code == 413
    error = over.json()["error"]
    assert error["type"] == "payload_too_large" and str(limit) in error["message"]
    # A body no job could take is refused by its length, before it is read.
    huge = api.post(
        "/jobs",
        content=b"{" + b" " * (3 * limit) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "payload_too_large"
    assert newest_job_ids(api) == before


def test_logs_withhold_what_a_failing_task_said_about_its_payload(
    api: httpx.Client, wait_for: Wait, system: LocalSystem
) -> None:
    marker = f"NOTE-{uuid.uuid4().hex}"
    job = submit(api, "diag.flaky", {"fail_times": 1, "note": marker})
    retried = wait_for(job["job_id"], until=lambda j: j["status"] in ("RETRY", "SUCCESS"))
    # The caller reads what the task said; the logs do not repeat it.
    if retried["status"] == "RETRY":
        assert marker in retried["error"]["message"]
    assert wait_for(job["job_id"])["status"] == "SUCCESS"
    logs = every_log(system)
    assert marker not in logs
    assert "FlakyError: (message withheld" in logs  # its traceback, without the message


def newest_job_ids(api: httpx.Client) -> list[str]:
    return [job["job_id"] for job in api.get("/jobs", params={"limit": 5}).json()["jobs"]]


def every_log(system: LocalSystem) -> str:
    return "\n".join(child.output(tail=None) for child in system.children)
