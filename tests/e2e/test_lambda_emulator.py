"""The local Lambda drives AWS's runtime interface client as Lambda would: init, invocations
held back until every extension is done, errors, timeouts, refused registrations."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.dev import ROOT
from infra.local.lambda_emulator import (
    InvocationError,
    InvocationTimedOut,
    LambdaEmulator,
    LambdaInitError,
)

pytestmark = pytest.mark.e2e

MakeEmulator = Callable[..., LambdaEmulator]


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[MakeEmulator]:
    """Build emulators for handlers under tests/lambda_handlers; all stop after the test."""
    made: list[LambdaEmulator] = []

    def make(module: str, **kwargs: Any) -> LambdaEmulator:
        emulator = LambdaEmulator(
            f"tests.lambda_handlers.{module}.handler",
            cwd=str(ROOT),
            log_path=tmp_path / f"{module}-{len(made)}.log",
            **kwargs,
        )
        made.append(emulator)
        return emulator

    yield make
    for emulator in made:
        emulator.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_echo_gets_the_event_and_a_lambda_context(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator("echo", env={"EXTRA": "from env"}, memory_mb=512)
    emulator.start()

    invocation = emulator.invoke({"hello": "world"})
    result = invocation.wait_response(10)

    assert result["event"] == {"hello": "world"}, emulator.output()
    assert result["request_id"] == invocation.request_id
    assert result["function_arn"] == emulator.function_arn
    assert result["function_arn"].endswith(":function:offload-api")
    assert (result["function_name"], result["function_version"]) == ("offload-api", "$LATEST")
    assert result["memory_mb"] == "512"
    assert 0 < result["remaining_ms"] <= 30_000
    assert result["trace_id"] == invocation.trace_id
    assert (result["task_root"], result["extra"]) == (str(ROOT), "from env")
    assert emulator.extensions == []
    assert invocation.delivered_at is not None and invocation.response_at is not None
    assert invocation.invoked_at <= invocation.delivered_at <= invocation.response_at
    assert invocation.wait_complete(5) >= invocation.response_at
    assert not invocation.timed_out


def test_post_response_work_holds_completion_and_the_next_invocation(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator("post_response")
    emulator.start()
    assert emulator.extensions == ["post-response"]

    first, second = emulator.invoke({"n": 1}), emulator.invoke({"n": 2})
    first.wait_response(10)
    completed = first.wait_complete(10)
    seen = second.wait_response(10)["seen"]

    assert first.response_at is not None and first.delivered_at is not None
    assert first.response_at - first.delivered_at < 0.5, "the handler itself returns at once"
    assert completed - first.response_at >= 0.9, "completion waits for the extension's work"
    assert second.delivered_at is not None and second.delivered_at >= completed
    invoke = next(event for event in seen if event["requestId"] == first.request_id)
    assert invoke == {
        "eventType": "INVOKE",
        "deadlineMs": first.deadline_ms,
        "requestId": first.request_id,
        "invokedFunctionArn": emulator.function_arn,
        "tracing": {"type": "X-Amzn-Trace-Id", "value": first.trace_id},
    }


def test_a_raising_handler_is_an_invocation_error_and_the_environment_lives_on(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator("echo")
    emulator.start()

    failed = emulator.invoke({"raise": "bad payload"})
    with pytest.raises(InvocationError) as error:
        failed.wait_response(10)

    assert (error.value.error_type, error.value.error_message) == ("ValueError", "bad payload")
    assert error.value.body["requestId"] == failed.request_id
    assert failed.wait_complete(5) >= (failed.response_at or 0)
    assert emulator.invoke({"again": True}).wait_response(10)["event"] == {"again": True}
    assert "[ERROR] ValueError: bad payload" in emulator.output()


@pytest.mark.parametrize(
    ("module", "error_type", "message"),
    [
        ("broken_init", "RuntimeError", "OFFLOAD_JOBS_TABLE is not set"),
        ("missing", "Runtime.ImportModuleError", "No module named"),
        ("extension_init_error", "Extension.InitError", "Extension.ConfigMissing"),
    ],
)
def test_a_failed_init_raises_with_its_error(
    make_emulator: MakeEmulator, module: str, error_type: str, message: str
) -> None:
    emulator = make_emulator(module)

    started = time.monotonic()
    with pytest.raises(LambdaInitError) as error:
        emulator.start(init_timeout_s=20)

    assert time.monotonic() - started < 10, "an init error ends start() at once"
    assert error.value.error_type == error_type
    assert message in error.value.error_message
    assert not emulator.running


def test_the_function_timeout_kills_the_environment(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator("echo", timeout_s=1)
    emulator.start()
    pid = emulator.invoke({}).wait_response(10)["pid"]

    slow = emulator.invoke({"sleep": 10})
    with pytest.raises(InvocationTimedOut) as error:
        slow.wait_response(5)

    assert isinstance(error.value, TimeoutError)
    assert error.value.error_type == "Sandbox.Timedout"
    assert slow.timed_out and slow.response_at is None
    assert time.monotonic() - slow.invoked_at < 3
    assert not emulator.running and not _alive(pid)
    emulator.start()
    assert emulator.invoke({"after": 1}).wait_response(10)["event"] == {"after": 1}


def test_post_response_work_past_the_timeout_times_the_invocation_out(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator("post_response", timeout_s=1)
    emulator.start()

    invocation = emulator.invoke({"work_s": 10})

    assert invocation.wait_response(5)["request_id"] == invocation.request_id
    with pytest.raises(TimeoutError):
        invocation.wait_complete(5)
    assert invocation.timed_out and invocation.completed_at is None
    assert not emulator.running


def test_registration_is_refused_after_init_and_shutdown_for_internal_extensions(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator("late_register")
    emulator.start()

    result = emulator.invoke({}).wait_response(10)

    assert result["at_init"] == {
        "status": 403,
        "errorType": "Extension.InvalidEventType",
        "errorMessage": "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension",
    }
    assert result["after_init"]["status"] == 403
    assert result["after_init"]["errorType"] == "Extension.RegistrationClosed"
    assert emulator.extensions == []


def test_a_runtime_that_exits_mid_invocation_fails_it(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator("echo")
    emulator.start()

    invocation = emulator.invoke({"exit": 3})
    with pytest.raises(InvocationError) as error:
        invocation.wait_response(10)

    assert error.value.error_type == "Runtime.ExitError"
    assert "exit status 3" in error.value.error_message
    assert not emulator.running


def _api(emulator: LambdaEmulator, method: str, path: str, **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://{emulator.runtime_api}{path}",
        method=method,
        data=b"{}" if method == "POST" else None,
        headers={name.replace("_", "-"): value for name, value in headers.items()},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_bad_api_calls_get_lambdas_errors(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator("echo")
    emulator.start()

    stray = _api(emulator, "POST", "/2018-06-01/runtime/invocation/not-current/response")
    no_id = _api(emulator, "GET", "/2020-01-01/extension/event/next")
    unknown = _api(
        emulator,
        "GET",
        "/2020-01-01/extension/event/next",
        Lambda_Extension_Identifier="8c6a1e5e-0000-4000-8000-000000000000",
    )
    late_init_error = _api(emulator, "POST", "/2018-06-01/runtime/init/error")

    assert stray == (400, {"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"})
    assert no_id[0] == 403 and no_id[1]["errorType"] == "Extension.MissingExtensionIdentifier"
    assert unknown[0] == 403 and unknown[1]["errorType"] == "Extension.UnknownExtensionIdentifier"
    assert late_init_error[0] == 403
    assert emulator.invoke({"still": "fine"}).wait_response(10)["event"] == {"still": "fine"}


def test_stop_fails_what_is_pending_kills_the_process_and_can_repeat(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator("echo")
    emulator.start()
    pid = emulator.invoke({}).wait_response(10)["pid"]
    running, queued = emulator.invoke({"sleep": 10}), emulator.invoke({})

    started = time.monotonic()
    emulator.stop()
    emulator.stop()

    assert time.monotonic() - started < 5
    assert not _alive(pid)
    for invocation in (running, queued):
        with pytest.raises(InvocationError) as error:
            invocation.wait_complete(1)
        assert error.value.error_type == "Emulator.Stopped"


def test_offloads_extension_survives_a_failing_event_handler(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator("flaky_extension", timeout_s=5)
    emulator.start()
    assert emulator.extensions == ["flaky"]
    for _ in range(3):
        invocation = emulator.invoke({})
        invocation.wait_complete(5)  # TimeoutError here if the extension's loop had died
        assert not invocation.timed_out
    assert "on_invoke failed, as this test asks" in emulator.output()
