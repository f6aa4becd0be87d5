from __future__ import annotations

import pytest

from infra.local.dev import passed_settings
from infra.ops.cli import _describe, main
from offload.settings import get_settings


def test_retry_line_says_why_and_when() -> None:
    line = _describe(
        {
            "job_id": "j",
            "status": "RETRY",
            "attempts": 1,
            "progress": None,
            "error": {"type": "FlakyError", "message": "planned failure 1 of 2"},
            "next_attempt_at": "2026-11-21T06:26:47.000000Z",
        }
    )
    assert line == (
        "j RETRY (attempt 1) FlakyError: planned failure 1 of 2; "
        "next attempt at 2026-11-21T06:26:47.000000Z"
    )


def test_running_line_shows_progress() -> None:
    job = {
        "job_id": "j",
        "status": "STARTED",
        "attempts": 1,
        "progress": {"percent": 42.4, "message": "rows"},
        "error": None,
    }
    assert _describe(job) == "j STARTED (attempt 1) 42% rows"


def test_bad_payload_json_is_refused_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "diag.echo", "{not json", "--api", "http://127.0.0.1:9"]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_unreachable_api_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "list", "--api", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the API" in capsys.readouterr().err


def test_a_wrong_setting_is_a_clear_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("OFFLOAD_AUTH", "tokens")
    monkeypatch.delenv("OFFLOAD_API_TOKENS", raising=False)
    try:
        assert main(["jobs", "list"]) == 2
    finally:
        get_settings.cache_clear()
    assert "invalid configuration" in capsys.readouterr().err


def test_make_dev_passes_behaviour_settings_but_never_locations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OFFLOAD_AUTH", "tokens")
    monkeypatch.setenv("offload_api_tokens", "t=alice")
    monkeypatch.setenv("OFFLOAD_CPU_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/prod-cpu")
    monkeypatch.setenv("OFFLOAD_AWS_ENDPOINT_URL", "http://elsewhere:1")
    passed = passed_settings()
    assert passed["OFFLOAD_AUTH"] == "tokens" and passed["offload_api_tokens"] == "t=alice"
    assert "OFFLOAD_CPU_QUEUE_URL" not in passed and "OFFLOAD_AWS_ENDPOINT_URL" not in passed


def test_api_refuses_to_serve_openly_beyond_loopback_unless_told(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OFFLOAD_AUTH", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["api", "--host", "0.0.0.0", "--port", "1"]) == 2
    finally:
        get_settings.cache_clear()
    assert "OFFLOAD_AUTH" in capsys.readouterr().err
