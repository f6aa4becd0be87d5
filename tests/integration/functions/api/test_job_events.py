"""`GET /jobs/{id}/events`: Server-Sent Events of a job's changes, ending with `end`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.api.main import create_app
from offload.aws import transitions
from offload.aws.store import JobStore
from offload.core.model import Progress, isoformat
from offload.runtime import claiming
from offload.settings import Settings
from tests.integration import jobs


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def read_events(client: TestClient, job_id: str, **headers: str) -> list[tuple[str, str, Any]]:
    """(event, id, data) of each event until the stream closes."""
    events: list[tuple[str, str, Any]] = []
    fields: dict[str, str] = {}
    with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "event" in fields:
                    events.append((fields["event"], fields["id"], json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    return events


def test_a_job_is_streamed_from_pending_to_its_end(client: TestClient, settings: Settings) -> None:
    store = JobStore(settings)
    job_id = jobs.pending(store, "diag.sleep", payload={"seconds": 1})

    def work() -> None:
        time.sleep(0.5)
        claiming.claim(store, job_id, 1, "w/1", lease_s=60, max_attempts=3)
        time.sleep(1.2)
        store.apply(
            transitions.report_progress(job_id, 1, Progress(percent=50, message="half way"))
        )
        time.sleep(1.2)
        store.apply(transitions.succeed(job_id, 1, {"slept": 1}))

    worker = threading.Thread(target=work)
    worker.start()
    events = read_events(client, job_id)
    worker.join()
    names = [name for name, _, _ in events]
    assert names == ["job", "job", "job", "end"]
    statuses = [data["status"] for _, _, data in events]
    assert statuses == ["PENDING", "STARTED", "STARTED", "SUCCESS"]
    assert events[2][2]["progress"] == {"percent": 50.0, "message": "half way"}
    assert events[-1][2]["result"] == {"slept": 1}
    # Each id is the change's time: a reconnect names the last one it saw.
    assert len({event_id for _, event_id, _ in events}) == 4


def test_a_reconnect_after_the_end_gets_the_end_at_once(
    client: TestClient, settings: Settings
) -> None:
    store = JobStore(settings)
    job_id = jobs.pending(store, "diag.sleep", payload={"seconds": 1})
    claiming.claim(store, job_id, 1, "w/1", lease_s=60, max_attempts=3)
    store.apply(transitions.succeed(job_id, 1, None))
    first = read_events(client, job_id)
    again = read_events(client, job_id, **{"Last-Event-ID": first[-1][1]})
    assert [name for name, _, _ in again] == ["end"]


def test_a_reconnect_mid_job_gets_only_newer_changes(
    client: TestClient, settings: Settings
) -> None:
    store = JobStore(settings)
    job_id = jobs.pending(store, "diag.sleep", payload={"seconds": 1})
    seen = store.get(job_id).updated_at

    def work() -> None:
        time.sleep(0.5)
        claiming.claim(store, job_id, 1, "w/1", lease_s=60, max_attempts=3)
        time.sleep(1.2)
        store.apply(transitions.succeed(job_id, 1, None))

    worker = threading.Thread(target=work)
    worker.start()
    events = read_events(client, job_id, **{"Last-Event-ID": isoformat(seen)})
    worker.join()
    assert [data["status"] for _, _, data in events] == ["STARTED", "SUCCESS"]


def test_another_callers_job_is_404_before_any_stream(
    client: TestClient, settings: Settings
) -> None:
    job_id = jobs.pending(JobStore(settings), "diag.sleep", payload={"seconds": 1}, caller="bob")
    response = client.get(f"/jobs/{job_id}/events")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "job_not_found"
