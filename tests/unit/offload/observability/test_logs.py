from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from offload.observability.logs import WITHHELD, job_id_var, log_context, request_id_var

PROBE = """
import logging
from offload.observability import logs
logs.configure("probe-service")
log = logging.getLogger("some.module")
log.info("before")
with logs.log_context(job_id="job-1", request_id="req-1"):
    log.warning("inside %s", "the job")
    with logs.log_context(job_id="job-2"):
        logging.getLogger("celery").error("nested")
log.debug("filtered out")
"""


def test_every_line_is_json_with_the_job_and_request_ids() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["message"] for line in lines] == ["before", "inside the job", "nested"]
    assert all(line["service"] == "probe-service" for line in lines)
    # Powertools leaves out keys whose value is None.
    ids = [(line.get("job_id"), line.get("request_id")) for line in lines]
    assert ids == [(None, None), ("job-1", "req-1"), ("job-2", "req-1")]
    assert [line["level"] for line in lines] == ["INFO", "WARNING", "ERROR"]


def test_the_context_is_restored_after_the_block() -> None:
    with log_context(job_id="a", request_id="b"):
        assert (job_id_var.get(), request_id_var.get()) == ("a", "b")
    assert (job_id_var.get(), request_id_var.get()) == (None, None)


WITHHOLDING_PROBE = """
import logging, sys
from offload.observability import logs
from offload.errors import AwsUnavailable
logs.configure("probe", "DEBUG", error_messages=sys.argv[1] == "on")
log = logging.getLogger("tasks.mine")

def parse_row(row):
    try:
        int(row)
    except ValueError as inner:
        raise RuntimeError(f"row {row} is bad") from inner

try:
    parse_row("SECRET-ROW")
except RuntimeError as exc:
    log.warning("job raised %s", exc, exc_info=True)
log.error("store: %s", AwsUnavailable("DynamoDB", "ThrottlingException"))
logging.getLogger("botocore.endpoint").debug("Making request with body SECRET-BODY")
"""


def probe(error_messages: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-c", WITHHOLDING_PROBE, error_messages],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_exception_messages_are_withheld_by_default_frames_and_types_kept() -> None:
    lines = probe("off")
    text = json.dumps(lines)
    assert "SECRET" not in text  # not in the message, the traceback, its cause, or botocore's
    failure, outage = lines
    assert failure["message"] == f"job raised RuntimeError {WITHHELD}"
    assert "parse_row" in failure["exception"] and "RuntimeError" in failure["exception"]
    assert "ValueError" in failure["exception"]  # the cause's type is kept too
    assert failure["exception_name"] == "RuntimeError"
    # offload's own errors say only what offload put in them: kept whole.
    assert outage["message"] == "store: DynamoDB is unavailable: ThrottlingException"


def test_exception_messages_are_logged_when_configured() -> None:
    failure = probe("on")[0]
    assert failure["message"] == "job raised row SECRET-ROW is bad"
    assert "SECRET-ROW" in failure["exception"]


CELERY_PROBE = """
import logging
from offload.observability import logs
logs.configure("probe")
context = {"id": "j1", "name": "diag.x", "exc": "ValueError('SECRET-EXC')",
           "traceback": "Traceback ... SECRET-TB", "args": "()", "kwargs": "{'p': 'SECRET-KW'}",
           "description": "raised unexpected"}
logging.getLogger("celery.app.trace").error(
    "Task %(name)s[%(id)s] %(description)s: %(exc)s", context, extra={"data": context}
)
"""


def test_celerys_task_failure_line_withholds_the_exception_and_the_arguments() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CELERY_PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert "SECRET" not in out
    (line,) = [json.loads(text) for text in out.splitlines()]
    assert line["message"] == f"Task diag.x[j1] raised unexpected: ValueError {WITHHELD}"
