"""`GET /queues`: each lane's backlog as SQS and the job store see it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

import tasks
from functions.api.main import create_app
from offload.aws import items
from offload.aws.dlq import bury
from offload.aws.queues import QueuePublisher
from offload.aws.store import JobStore
from offload.core.model import utcnow
from offload.settings import Settings
from tests.integration import jobs


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_each_lane_shows_waiting_delayed_and_dead_letters(
    client: TestClient, settings: Settings
) -> None:
    store = JobStore(settings)
    publisher = QueuePublisher(settings)
    sleep = tasks.catalog().get("diag.sleep")
    waiting = jobs.pending(store, "diag.sleep", payload={"seconds": 1})
    jobs.doctor(  # submitted two minutes ago, still not started
        store,
        waiting,
        "SET created_at = :then, updated_at = :then",
        {":then": items.timestamp(utcnow() - timedelta(minutes=2))},
    )
    publisher.send(sleep, waiting, {"seconds": 1})
    publisher.send(sleep, "a-retry", {"seconds": 1}, attempt=2, delay_s=300)
    bury(settings, "gpu", "body", "failed after 3 of 3 attempts", job_id="x")

    response = client.get("/queues")
    assert response.status_code == 200
    lanes = {queue["lane"]: queue for queue in response.json()["queues"]}
    assert set(lanes) == {"cpu", "gpu"}
    cpu, gpu = lanes["cpu"], lanes["gpu"]
    assert (cpu["visible"], cpu["delayed"], cpu["in_flight"], cpu["dead_letters"]) == (1, 1, 0, 0)
    assert 119 < cpu["oldest_waiting_s"] < 200
    assert (gpu["visible"], gpu["dead_letters"], gpu["oldest_waiting_s"]) == (0, 1, None)


def test_queues_are_for_operators(settings: Settings) -> None:
    closed = settings.model_copy(
        update={"auth": "tokens", "api_tokens": "t-al=alice,t-ops=ops", "operators": "ops"}
    )
    with TestClient(create_app(closed)) as client:
        assert client.get("/queues").status_code == 401
        assert client.get("/queues", headers={"authorization": "Bearer t-al"}).status_code == 403
        assert client.get("/queues", headers={"authorization": "Bearer t-ops"}).status_code == 200


def test_the_dashboard_is_served_with_its_script_under_a_strict_policy(
    client: TestClient,
) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/dashboard/app.js" defer></script>' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    script = client.get("/dashboard/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "/jobs/${jobId}/events" in script.text  # the detail follows the SSE stream
    assert client.get("/dashboard/app.css").status_code == 200
    assert client.get("/dashboard/../main.py").status_code == 404
    assert client.get("/dashboard/index.py").status_code == 404
