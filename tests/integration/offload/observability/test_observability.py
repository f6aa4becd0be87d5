"""Request ids reach jobs and their log lines; job events become EMF metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.api.main import create_app
from offload.aws.store import JobStore
from offload.observability.logs import ContextFilter
from offload.settings import Settings
from tests.integration.functions.api.test_api import finished, submit


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record logged meanwhile, with the ids `offload.observability.logs` adds."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(logging.DEBUG)
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield seen
    root.removeHandler(handler)
    root.setLevel(level)


def emf(out: str) -> list[dict[str, Any]]:
    """The EMF metric lines of some output, as (name, task, lane, value)."""
    found = []
    for line in out.splitlines():
        if line.startswith('{"_aws"'):
            data = json.loads(line)
            (definition,) = data["_aws"]["CloudWatchMetrics"]
            assert definition["Namespace"] == "offload"
            assert definition["Dimensions"] == [["task", "lane"]]
            (metric,) = definition["Metrics"]
            found.append(
                {
                    "name": metric["Name"],
                    "unit": metric["Unit"],
                    "task": data["task"],
                    "lane": data["lane"],
                    "value": data[metric["Name"]][0],
                }
            )
    return found


def test_a_request_id_is_echoed_and_kept_on_its_jobs(
    client: TestClient, settings: Settings
) -> None:
    response = client.post(
        "/jobs",
        json={"task": "diag.sleep", "payload": {"seconds": 1}},
        headers={"x-request-id": "req-42"},
    )
    assert response.headers["x-request-id"] == "req-42"
    assert JobStore(settings).get(response.json()["job_id"]).request_id == "req-42"
    # Without one (or with an unsafe one) the API makes one up.
    for headers in ({}, {"x-request-id": "bad id\twith spaces"}):
        made = client.get("/healthz", headers=headers).headers["x-request-id"]
        assert len(made) == 36 and made != headers.get("x-request-id")


def test_an_inline_jobs_log_lines_carry_its_id_and_its_requests(
    client: TestClient, records: list[logging.LogRecord]
) -> None:
    job = client.post(
        "/jobs",
        json={"task": "diag.nap", "payload": {"seconds": 0, "crash": True}},
        headers={"x-request-id": "req-crash"},
    ).json()
    assert finished(client, job["job_id"])["status"] == "FAILURE"
    about_job = [r for r in records if r.getMessage().startswith(f"inline job {job['job_id']}")]
    assert about_job, [r.getMessage() for r in records]
    for record in about_job:
        assert (record.job_id, record.request_id) == (job["job_id"], "req-crash")  # type: ignore[attr-defined]


def test_job_events_become_emf_metrics_by_task_and_lane(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = submit(client, "diag.echo", {"n": 1})
    bad = submit(client, "diag.nap", {"seconds": 0, "crash": True})
    finished(client, ok["job_id"])
    finished(client, bad["job_id"])
    metrics = emf(capsys.readouterr().out)
    names = {(m["name"], m["task"]) for m in metrics}
    assert {
        ("JobsSubmitted", "diag.echo"),
        ("JobsSucceeded", "diag.echo"),
        ("JobsSubmitted", "diag.nap"),
        ("JobsFailed", "diag.nap"),
        ("RunDuration", "diag.echo"),
        ("JobDuration", "diag.nap"),
    } <= names
    assert all(m["lane"] == "inline" for m in metrics)
    durations = [m for m in metrics if m["name"].endswith("Duration")]
    assert all(m["unit"] == "Milliseconds" and m["value"] >= 0 for m in durations)
