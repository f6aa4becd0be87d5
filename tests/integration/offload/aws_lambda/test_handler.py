"""The API's Lambda handler, fed AWS's sample HTTP API events (varied), over moto in process."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.api.main import create_app
from offload.aws_lambda.handler import LambdaHandler, lambda_handler
from offload.fastapi import Offload
from offload.settings import Settings
from tests.lambda_events import (
    FakeContext,
    http_event,
    jwt_claims,
    response_json,
    sample_event,
)

TERMINAL = ("SUCCESS", "FAILURE", "REVOKED")


@dataclass
class Api:
    """The handler as Lambda calls it, and the parts of the app a test may wait on."""

    handler: LambdaHandler
    offload: Offload

    def call(self, method: str, path: str, sub: str | None, **event: Any) -> dict[str, Any]:
        """Invoke the handler with an event for `method path` from caller `sub` (None: no
        authorizer); `event` as `http_event` takes it."""
        claims = None if sub is None else jwt_claims(sub)
        return self.invoke(http_event(method, path, claims=claims, **event))

    def invoke(self, event: dict[str, Any], context: FakeContext | None = None) -> dict[str, Any]:
        """Invoke the handler with `event` as it is."""
        return self.handler(event, context or FakeContext())

    def submit(self, sub: str, task: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a job as `sub`; the job as the 202 answered it."""
        response = self.call("POST", "/jobs", sub, json_body={"task": task, "payload": payload})
        assert response["statusCode"] == 202, response
        job: dict[str, Any] = response_json(response)
        return job

    def finished(self, sub: str, job_id: str) -> dict[str, Any]:
        """Long-poll the job, through the handler, until it ends."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = self.call("GET", f"/jobs/{job_id}", sub, query={"wait": "2"})
            assert response["statusCode"] == 200, response
            job: dict[str, Any] = response_json(response)
            if job["status"] in TERMINAL:
                return job
        raise AssertionError(f"job {job_id} did not end")


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    app = create_app(settings.model_copy(update={"auth": "jwt"}))
    offload: Offload = app.state.offload
    yield Api(lambda_handler(app), offload)
    # An inline job still running would outlive mock_aws and call AWS itself.
    inline = offload.lambda_inline
    deadline = time.monotonic() + 15
    while inline is not None and inline.active and time.monotonic() < deadline:
        time.sleep(0.05)


def error_of(response: Mapping[str, Any], status: int) -> dict[str, Any]:
    """The error of a response in our one shape, after checking its status."""
    assert response["statusCode"] == status, response
    assert response["headers"]["content-type"] == "application/json"
    body = response_json(response)
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["plain", "base64"])
def test_submit_takes_a_json_body_plain_or_base64(api: Api, base64_encoded: bool) -> None:
    response = api.call(
        "POST",
        "/jobs",
        "alice",
        json_body={"task": "diag.echo", "payload": {"hello": "world"}},
        base64_encoded=base64_encoded,
    )
    assert response["statusCode"] == 202, response
    assert response["isBase64Encoded"] is False
    job = response_json(response)
    assert response["headers"]["location"] == f"/jobs/{job['job_id']}"
    assert (job["task"], job["lane"], job["status"]) == ("diag.echo", "inline", "PENDING")
    assert (job["attempts"], job["max_attempts"], job["result"]) == (0, 1, None)
    done = api.finished("alice", job["job_id"])
    assert (done["status"], done["result"]) == ("SUCCESS", {"hello": "world"})


def test_the_sam_sample_post_is_accepted_with_a_subject_and_a_content_type(api: Api) -> None:
    # As generated, but for these two: a base64 body, capitalised header names, bare cookies.
    event = sample_event("http-api-proxy-post-jobs")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "alice"
    event["headers"]["Content-Type"] = "application/json"
    response = api.invoke(event)
    assert response["statusCode"] == 202, response
    job = response_json(response)
    assert job["task"] == "diag.echo"
    assert api.finished("alice", job["job_id"])["result"] == {"hello": "world"}


def test_a_json_body_without_a_content_type_is_422_in_our_error_shape(api: Api) -> None:
    # FastAPI reads a body as JSON only when its content-type says so (strict_content_type).
    event = sample_event("http-api-proxy-post-jobs")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "alice"
    error = error_of(api.invoke(event), 422)
    assert error["type"] == "invalid_request"
    assert error["message"].startswith("send the body as JSON with Content-Type: application/json")
    assert response_json(api.call("GET", "/jobs", "alice"))["jobs"] == []


def test_get_one_job(api: Api) -> None:
    job = api.submit("alice", "diag.sleep", {"seconds": 1})
    response = api.call("GET", f"/jobs/{job['job_id']}", "alice")
    assert response["statusCode"] == 200, response
    got = response_json(response)
    assert (got["job_id"], got["task"], got["lane"]) == (job["job_id"], "diag.sleep", "cpu")
    assert got["status"] == "PENDING"


def test_list_filters_and_pages_through_the_query_string(api: Api) -> None:
    sleeps = [api.submit("alice", "diag.sleep", {"seconds": n})["job_id"] for n in range(3)]
    echo = api.submit("alice", "diag.echo", {})["job_id"]
    api.finished("alice", echo)

    listed: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        query = {"limit": "1", "task": "diag.sleep", **({"cursor": cursor} if cursor else {})}
        response = api.call("GET", "/jobs", "alice", query=query)
        assert response["statusCode"] == 200, response
        page = response_json(response)
        assert len(page["jobs"]) <= 1
        listed += [j["job_id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert listed == sleeps[::-1]

    def ids(query: dict[str, str]) -> list[str]:
        response = api.call("GET", "/jobs", "alice", query=query)
        assert response["statusCode"] == 200, response
        return [j["job_id"] for j in response_json(response)["jobs"]]

    assert ids({"status": "SUCCESS"}) == [echo]
    assert ids({"status": "PENDING", "limit": "2"}) == sleeps[::-1][:2]
    bogus = error_of(api.call("GET", "/jobs", "alice", query={"status": "BOGUS"}), 422)
    assert bogus["type"] == "invalid_request" and bogus["details"][0]["field"] == "status"


def test_cookies_do_not_get_in_the_way(api: Api) -> None:
    cookies = ["session=abc123", "theme=dark", "cookie1"]
    response = api.call(
        "POST",
        "/jobs",
        "alice",
        cookies=cookies,
        json_body={"task": "diag.sleep", "payload": {"seconds": 1}},
    )
    assert response["statusCode"] == 202, response
    assert "cookies" not in response  # the API sets none
    listed = api.call("GET", "/jobs", "alice", cookies=cookies)
    assert listed["statusCode"] == 200, listed
    assert [j["job_id"] for j in response_json(listed)["jobs"]] == [
        response_json(response)["job_id"]
    ]


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["plain", "base64"])
def test_a_malformed_json_body_is_422_in_our_error_shape(api: Api, base64_encoded: bool) -> None:
    response = api.call(
        "POST",
        "/jobs",
        "alice",
        body='{"task": "diag.echo",',
        base64_encoded=base64_encoded,
        headers={"content-type": "application/json"},
    )
    error = error_of(response, 422)
    assert error["type"] == "invalid_request"
    assert response_json(api.call("GET", "/jobs", "alice"))["jobs"] == []


def test_unknown_routes_are_404_in_our_error_shape(api: Api) -> None:
    assert error_of(api.call("GET", "/nope", "alice"), 404)["type"] == "not_found"
    # The SAM sample as generated: POST /path/to/resource.
    assert error_of(api.invoke(sample_event()), 404)["type"] == "not_found"
    assert error_of(api.call("DELETE", "/jobs", "alice"), 405)["type"] == "method_not_allowed"


def test_another_callers_job_is_not_found(api: Api) -> None:
    job_id = api.submit("alice", "diag.sleep", {"seconds": 1})["job_id"]
    assert api.call("GET", f"/jobs/{job_id}", "alice")["statusCode"] == 200
    for method, path in (("GET", f"/jobs/{job_id}"), ("POST", f"/jobs/{job_id}/cancel")):
        assert error_of(api.call(method, path, "bob"), 404)["type"] == "job_not_found"
    # Bob's attempt to cancel changed nothing.
    job = response_json(api.call("GET", f"/jobs/{job_id}", "alice"))
    assert (job["status"], job["cancel_requested"]) == ("PENDING", False)


def test_each_caller_lists_only_their_own_jobs(api: Api) -> None:
    alices = {api.submit("alice", "diag.sleep", {"seconds": 1})["job_id"] for _ in range(3)}
    bobs = {api.submit("bob", "diag.sleep", {"seconds": 1})["job_id"]}
    for sub, own in (("alice", alices), ("bob", bobs)):
        response = api.call("GET", "/jobs", sub)
        assert {j["job_id"] for j in response_json(response)["jobs"]} == own


@pytest.mark.parametrize(
    "claims",
    [None, {"claim1": "value1", "claim2": "value2"}, {"sub": ""}],
    ids=["no-authorizer", "no-sub", "empty-sub"],
)
def test_requests_without_a_verified_subject_are_401(
    api: Api, claims: dict[str, str] | None
) -> None:
    # A bearer token alone proves nothing: only the authorizer's claims count.
    headers = {"authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJldmUifQ."}
    for method, path in (("POST", "/jobs"), ("GET", "/jobs"), ("GET", "/jobs/x")):
        event = http_event(
            method,
            path,
            claims=claims,
            headers=headers,
            json_body={"task": "diag.echo", "payload": {}},
        )
        response = api.invoke(event)
        assert error_of(response, 401)["type"] == "unauthenticated", (method, path)
        assert response["headers"]["www-authenticate"] == "Bearer"
    # Nothing was stored for the anonymous submit.
    assert response_json(api.call("GET", "/jobs", "eve"))["jobs"] == []


def test_healthz_needs_no_claims(api: Api) -> None:
    response = api.call("GET", "/healthz", None)
    assert response["statusCode"] == 200, response
    assert response_json(response) == {"status": "ok"}


def test_the_response_carries_the_invocations_request_id(api: Api) -> None:
    # The id in the function's CloudWatch lines, not API Gateway's nor the client's.
    context = FakeContext()
    event = http_event("GET", "/healthz", headers={"x-request-id": "client-chosen"})
    response = api.invoke(event, context)
    assert response["headers"]["x-request-id"] == context.aws_request_id


def test_an_inline_job_runs_after_the_handler_returned(api: Api) -> None:
    started = time.monotonic()
    response = api.call(
        "POST", "/jobs", "alice", json_body={"task": "diag.nap", "payload": {"seconds": 1}}
    )
    took = time.monotonic() - started
    assert response["statusCode"] == 202, response
    assert took < 1, f"the handler took {took:.2f} s: it waited for the 1 s nap"
    job_id = response_json(response)["job_id"]
    right_after = response_json(api.call("GET", f"/jobs/{job_id}", "alice"))
    assert right_after["status"] not in TERMINAL
    done = api.finished("alice", job_id)
    assert (done["status"], done["result"], done["attempts"]) == ("SUCCESS", {"slept_s": 1}, 1)


def test_the_app_behind_the_handler_still_runs_inline_jobs_under_uvicorn(
    settings: Settings,
) -> None:
    # functions.api.main serves one app both ways: `handler` for Lambda, `app` for uvicorn.
    # Requests that did not come through the handler must not wait for a release that
    # never comes.
    app = create_app(settings)
    lambda_handler(app)
    with TestClient(app) as client:
        job_id = client.post("/jobs", json={"task": "diag.echo", "payload": {"n": 1}}).json()[
            "job_id"
        ]
        deadline = time.monotonic() + 10
        while (job := client.get(f"/jobs/{job_id}?wait=2").json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, job
        assert job["status"] == "SUCCESS"
