"""`GET /workers`: each lane's workers as their heartbeats recorded them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from functions.api.main import create_app
from offload.aws.fleet import WorkerIdentity, WorkerRegistry
from offload.core.model import utcnow
from offload.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_workers_are_listed_per_lane_with_their_jobs_and_silent_ones_marked(
    client: TestClient, settings: Settings
) -> None:
    registry = WorkerRegistry(settings)
    gpu = WorkerIdentity(lanes=("gpu",), node="gpu-node", pid=7, concurrency=1)
    registry.beat(gpu, ["job-1"])
    crashed = WorkerIdentity(lanes=("gpu",), node="gpu-node", pid=6, concurrency=1)
    registry.beat(crashed, ["job-0"], now=utcnow() - timedelta(minutes=5))
    cpu = WorkerIdentity(lanes=("cpu",), node="cpu-node", pid=9, concurrency=8)
    registry.beat(cpu, [], stopping=True)

    response = client.get("/workers")
    assert response.status_code == 200
    body = response.json()
    assert body["silent_after_beats"] == 3
    lanes = {lane["lane"]: lane for lane in body["lanes"]}
    assert list(lanes) == ["cpu", "gpu"]
    assert (lanes["gpu"]["live"], lanes["gpu"]["silent"], lanes["gpu"]["stopping"]) == (1, 1, 0)
    by_id = {w["worker_id"]: w for w in lanes["gpu"]["workers"]}
    assert by_id["gpu-node/7"]["state"] == "live"
    assert by_id["gpu-node/7"]["jobs"] == ["job-1"]
    assert by_id["gpu-node/6"]["state"] == "silent"
    assert by_id["gpu-node/6"]["jobs"] == ["job-0"]  # what it ran when it went silent
    (stopping,) = lanes["cpu"]["workers"]
    assert (stopping["state"], stopping["concurrency"], stopping["jobs_running"]) == (
        "stopping",
        8,
        0,
    )
    # Times as in the job JSON: ISO 8601, UTC.
    assert stopping["last_beat"].endswith("Z") and stopping["started_at"].endswith("Z")


def test_no_workers_is_an_empty_list_per_lane(client: TestClient) -> None:
    body = client.get("/workers").json()
    assert [(lane["lane"], lane["workers"]) for lane in body["lanes"]] == [
        ("cpu", []),
        ("gpu", []),
    ]


def test_workers_are_for_operators(settings: Settings) -> None:
    closed = settings.model_copy(
        update={"auth": "tokens", "api_tokens": "t-al=alice,t-ops=ops", "operators": "ops"}
    )
    with TestClient(create_app(closed)) as client:
        assert client.get("/workers").status_code == 401
        assert client.get("/workers", headers={"authorization": "Bearer t-al"}).status_code == 403
        assert client.get("/workers", headers={"authorization": "Bearer t-ops"}).status_code == 200


def test_an_unreadable_table_is_a_503(settings: Settings) -> None:
    lost = settings.model_copy(update={"workers_table": "no-such-table"})
    with TestClient(create_app(lost)) as client:
        response = client.get("/workers")
    assert response.status_code == 503
    assert "DynamoDB" in response.json()["error"]["message"]
