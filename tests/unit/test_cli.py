from __future__ import annotations

import pytest

from infra.cli import _describe, main


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
