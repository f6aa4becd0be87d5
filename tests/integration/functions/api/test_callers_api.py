"""Jobs belong to their caller: over HTTP, with bearer tokens and with JWT claims."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from functions.api.main import create_app
from offload.settings import Settings

ALICE = {"authorization": "Bearer token-alice"}
BOB = {"authorization": "Bearer token-bob"}
OPS = {"authorization": "Bearer token-ops"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with_tokens = settings.model_copy(
        update={
            "auth": "tokens",
            "api_tokens": "token-alice=alice,token-bob=bob,token-ops=ops",
            "operators": "ops",
        }
    )
    with TestClient(create_app(with_tokens)) as client:
        yield client


def submit(client: TestClient, headers: dict[str, str], **body: object) -> str:
    response = client.post(
        "/jobs", json={"task": "diag.sleep", "payload": {"seconds": 1}, **body}, headers=headers
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def test_another_callers_job_is_not_found(client: TestClient) -> None:
    job_id = submit(client, ALICE)
    assert client.get(f"/jobs/{job_id}", headers=ALICE).status_code == 200
    for method, path in (("GET", f"/jobs/{job_id}"), ("POST", f"/jobs/{job_id}/cancel")):
        response = client.request(method, path, headers=BOB)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["type"] == "job_not_found"
    # Bob's attempt to cancel changed nothing.
    assert client.get(f"/jobs/{job_id}", headers=ALICE).json()["status"] == "PENDING"


def test_each_caller_lists_only_their_own_jobs(client: TestClient) -> None:
    alices = {submit(client, ALICE) for _ in range(3)}
    bobs = {submit(client, BOB)}
    listed = {j["job_id"] for j in client.get("/jobs", headers=ALICE).json()["jobs"]}
    assert listed == alices
    listed = {j["job_id"] for j in client.get("/jobs", headers=BOB).json()["jobs"]}
    assert listed == bobs


def test_idempotency_keys_are_per_caller(client: TestClient) -> None:
    first = submit(client, ALICE, idempotency_key="k1")
    assert submit(client, ALICE, idempotency_key="k1") == first
    assert submit(client, BOB, idempotency_key="k1") != first


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer nope"}, {"authorization": "Basic dG9rZW4tYWxpY2U6"}],
)
def test_requests_without_a_known_caller_are_401(
    client: TestClient, headers: dict[str, str]
) -> None:
    for method, path in (("POST", "/jobs"), ("GET", "/jobs"), ("GET", "/jobs/x")):
        response = client.request(
            method, path, json={"task": "diag.echo", "payload": {}}, headers=headers
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["type"] == "unauthenticated"
    # Nothing was stored for the anonymous submit.
    assert client.get("/jobs", headers=ALICE).json()["jobs"] == []


def test_public_routes_need_no_caller(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/tasks").status_code == 200


def test_dead_letters_are_for_operators(client: TestClient) -> None:
    assert client.get("/dlq/cpu", headers=ALICE).status_code == 403
    assert client.post("/dlq/cpu/replay", headers=ALICE).status_code == 403
    assert client.get("/dlq/cpu").status_code == 401
    assert client.get("/dlq/cpu", headers=OPS).status_code == 200


def test_jwt_mode_refuses_requests_that_did_not_come_through_the_authorizer(
    settings: Settings,
) -> None:
    # Served outside API Gateway (no event, hence no verified claims), nobody gets in.
    with TestClient(create_app(settings.model_copy(update={"auth": "jwt"}))) as client:
        response = client.post(
            "/jobs",
            json={"task": "diag.echo", "payload": {}},
            headers={"authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJldmUifQ."},
        )
        assert response.status_code == 401
