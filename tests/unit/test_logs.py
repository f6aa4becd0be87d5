from __future__ import annotations

import json
import subprocess
import sys

from offload.logs import job_id_var, log_context, request_id_var

PROBE = """
import logging
from offload import logs
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
