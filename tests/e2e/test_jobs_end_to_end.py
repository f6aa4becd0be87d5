"""A client submits over HTTP; each job runs in its lane on real processes."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import pytest
from pypdf import PdfReader

from infra.local.dev import LocalSystem
from tests.e2e.conftest import TERMINAL, submit

pytestmark = pytest.mark.e2e
Wait = Callable[..., dict[str, Any]]


def test_inline_echo_succeeds(api: httpx.Client, wait_for: Wait) -> None:
    job = submit(api, "diag.echo", {"hello": "world"})
    done = wait_for(job["job_id"])
    assert (done["status"], done["result"], done["lane"]) == (
        "SUCCESS",
        {"hello": "world"},
        "inline",
    )


def test_inline_nap_runs_after_the_response(api: httpx.Client, wait_for: Wait) -> None:
    job = submit(api, "diag.nap", {"seconds": 2})
    answered = datetime.now(UTC)
    assert job["status"] == "PENDING"
    done = wait_for(job["job_id"])
    assert done["status"] == "SUCCESS"
    assert datetime.fromisoformat(done["finished_at"]) > answered


def test_a_blocking_inline_task_does_not_stall_the_api(api: httpx.Client, wait_for: Wait) -> None:
    job = submit(api, "diag.nap", {"seconds": 4})
    # Plain reads on the same keep-alive connection while the nap blocks its thread: a
    # blocked event loop (or a request cycle held open) would answer only after the nap.
    seen = []
    for _ in range(10):
        seen.append(api.get(f"/jobs/{job['job_id']}").json()["status"])
        time.sleep(0.2)
    assert "STARTED" in seen, seen
    assert wait_for(job["job_id"])["status"] == "SUCCESS"


def test_cpu_sleep_reports_progress_then_succeeds(api: httpx.Client, wait_for: Wait) -> None:
    job = submit(api, "diag.sleep", {"seconds": 4})
    running = wait_for(
        job["job_id"],
        lambda j: (j["progress"] or {}).get("percent", 0) > 0 or j["status"] in TERMINAL,
    )
    assert running["status"] == "STARTED", running
    assert 0 < running["progress"]["percent"] < 100
    done = wait_for(job["job_id"])
    assert done["status"] == "SUCCESS" and done["lane"] == "cpu"
    assert done["progress"]["percent"] == 100
    assert done["result"]["slept_s"] >= 4


def test_flaky_succeeds_on_its_second_attempt(api: httpx.Client, wait_for: Wait) -> None:
    job = submit(api, "diag.flaky", {"fail_times": 1})
    done = wait_for(job["job_id"])
    assert (done["status"], done["attempts"]) == ("SUCCESS", 2), done
    assert done["result"] == {"attempt": 2}


def test_pdf_report_opens_with_the_expected_pages(
    api: httpx.Client, wait_for: Wait, system: LocalSystem
) -> None:
    rows = [[n, f"item {n}", n * 1.5] for n in range(400)]
    job = submit(
        api, "reports.pdf", {"title": "Inventory", "columns": ["n", "name", "price"], "rows": rows}
    )
    done = wait_for(job["job_id"])
    assert done["status"] == "SUCCESS", done
    result = done["result"]
    bucket, key = result["uri"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=system.aws_url, region_name="us-east-1")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == result["pages"] > 1
    assert len(data) == result["size_bytes"]
    assert "Inventory" in reader.pages[0].extract_text()


def test_embeddings_are_unit_vectors_that_rank_paraphrases(
    api: httpx.Client, wait_for: Wait
) -> None:
    texts = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply today.",
    ]
    job = submit(api, "embeddings.embed", {"texts": texts})
    done = wait_for(job["job_id"], timeout_s=240)
    assert done["status"] == "SUCCESS", done
    assert done["lane"] == "gpu"
    vectors = done["result"]["vectors"]
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    for vector in vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-4)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3


def test_documents_route_answers_before_its_durable_job_finishes(
    api: httpx.Client, wait_for: Wait
) -> None:
    response = api.post("/documents", json={"title": "Guitars", "text": "A man plays.\n\nMore."})
    answered = datetime.now(UTC)
    assert response.status_code == 202, response.text
    jobs = response.json()["jobs"]
    audit = wait_for(jobs["audit"])
    embedding = wait_for(jobs["embedding"], timeout_s=240)
    assert audit["status"] == "SUCCESS" and audit["lane"] == "inline"
    assert embedding["status"] == "SUCCESS" and embedding["lane"] == "gpu"
    assert datetime.fromisoformat(embedding["finished_at"]) > answered


def test_bad_input_is_422_and_unknown_jobs_404(api: httpx.Client) -> None:
    bad = api.post("/jobs", json={"task": "diag.sleep", "payload": {"seconds": "long"}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "payload.seconds"
    assert api.post("/jobs", json={"task": "nope", "payload": {}}).status_code == 422
    missing = api.get("/jobs/5f0e8a55-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "job_not_found"


def test_cli_submit_waits_for_the_result(system: LocalSystem) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.ops.cli",
            "submit",
            "diag.flaky",
            '{"fail_times": 0}',
            "--wait",
            "--api",
            system.api_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert '"status": "SUCCESS"' in out.stdout
    assert "PENDING" in out.stderr or "STARTED" in out.stderr or "SUCCESS" in out.stderr
    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.ops.cli",
            "jobs",
            "list",
            "--task",
            "diag.flaky",
            "--api",
            system.api_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "diag.flaky" in listing.stdout and "SUCCESS" in listing.stdout
