"""Fault injection on real processes: crashed workers, duplicate deliveries, long jobs.

The queues' visibility timeout is cut to a few seconds so that redeliveries happen within
the test; the worker's heartbeat and leases scale with it. Counts are small here;
`make soak` runs the larger ones (OFFLOAD_SOAK_KILLS).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra.local.dev import Child, LocalSystem, free_port
from offload.aws import celery_protocol
from offload.aws.store import JobStore
from tests.e2e.conftest import TERMINAL, logs_of, submit
from tests.integration.jobs import pending

pytestmark = pytest.mark.e2e

VISIBILITY_S = 6
KILLS = int(os.environ.get("OFFLOAD_SOAK_KILLS", "3"))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """Two cpu workers on queues with a short visibility timeout."""
    system = LocalSystem(
        aws_port=free_port(),
        api_port=free_port(),
        lanes=("cpu", "cpu"),
        log_dir=tmp_path_factory.mktemp("fault-logs"),
        visibility_timeout_s=VISIBILITY_S,
        # diag.hang's hard limit comes 1 s after its 2 s soft limit, not 30 s
        extra_env={"OFFLOAD_HARD_LIMIT_GRACE_S": "1", "OFFLOAD_WORKER_SHUTDOWN_GRACE_S": "3"},
    )
    with system.running(ready_timeout_s=90):
        yield system


@pytest.fixture
def api(faulty: LocalSystem) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faulty.api_url, timeout=30) as client:
        yield client


def poll(
    api: httpx.Client,
    system: LocalSystem,
    job_id: str,
    until: Callable[[dict[str, Any]], bool],
    timeout_s: float = 90,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job never got there: {job}\n{logs_of(system)}")
        time.sleep(0.2)


def marks(system: LocalSystem, job_id: str) -> list[str]:
    """The start/finish marks diag.sleep left for this job, as '<attempt>-<what>'."""
    settings = system.settings()
    s3 = boto3.client("s3", endpoint_url=system.aws_url, region_name="us-east-1")
    prefix = f"jobs/{job_id}/marks/"
    listing = s3.list_objects_v2(Bucket=settings.bucket_name(), Prefix=prefix)
    return sorted(item["Key"].removeprefix(prefix) for item in listing.get("Contents", []))


def worker_running(system: LocalSystem, job_id: str) -> Child:
    """The worker process whose pool runs the job (its node name holds the main pid)."""
    owner = JobStore(system.settings()).get(job_id).lease_owner
    assert owner, "the job has no lease"
    node = owner.rsplit("/", 1)[0]  # "cpu-<pid>@host"
    main_pid = int(node.split("@", 1)[0].rsplit("-", 1)[1])
    for child in system.workers():
        if child.process.pid == main_pid:
            return child
    raise AssertionError(f"no worker of this system owns {owner}")


def queue_empty(system: LocalSystem) -> bool:
    sqs = boto3.client("sqs", endpoint_url=system.aws_url, region_name="us-east-1")
    attrs = sqs.get_queue_attributes(
        QueueUrl=system.settings().queue_url("cpu"),
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return all(value == "0" for value in attrs.values())


def alive(process: Path) -> bool:
    """Whether /proc/<pid> names a process that has not exited (zombies have)."""
    try:
        return (process / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def running(job: dict[str, Any]) -> bool:
    """STARTED and past its first progress report (the task body is under way)."""
    return job["status"] in TERMINAL or (
        job["status"] == "STARTED" and (job["progress"] or {}).get("percent", 0) > 0
    )


@pytest.mark.parametrize("round_", range(KILLS))
def test_a_killed_worker_s_job_is_taken_over_and_runs_to_completion_once(
    faulty: LocalSystem, api: httpx.Client, round_: int
) -> None:
    job = submit(api, "diag.sleep", {"seconds": 4, "mark": True})
    started = poll(api, faulty, job["job_id"], running)
    assert started["status"] == "STARTED", started
    faulty.kill(worker_running(faulty, job["job_id"]))
    faulty.start_worker("cpu")  # keep two workers for the next round
    done = poll(api, faulty, job["job_id"], lambda j: j["status"] in TERMINAL)
    assert done["status"] == "SUCCESS", f"{done}\n{logs_of(faulty)}"
    assert done["attempts"] == 2
    # attempt 1 started and died; attempt 2 started and finished: one completed body
    assert marks(faulty, job["job_id"]) == ["1-started", "2-finished", "2-started"]


def test_the_same_message_delivered_twice_at_once_runs_once(
    faulty: LocalSystem, api: httpx.Client
) -> None:
    faulty.wait_workers_ready()
    job = submit(api, "diag.sleep", {"seconds": 3, "mark": True})
    # A second copy of its message, as SQS's at-least-once delivery may hand out.
    settings = faulty.settings()
    sqs = boto3.client("sqs", endpoint_url=faulty.aws_url, region_name="us-east-1")
    sqs.send_message(
        QueueUrl=settings.queue_url("cpu"),
        MessageBody=celery_protocol.encode(
            task="diag.sleep",
            task_id=job["job_id"],
            kwargs={"payload": {"seconds": 3.0, "mark": True}, "attempt": 1},
            routing_key="cpu",
        ),
    )
    done = poll(api, faulty, job["job_id"], lambda j: j["status"] in TERMINAL)
    assert (done["status"], done["attempts"]) == ("SUCCESS", 1), done
    assert marks(faulty, job["job_id"]) == ["1-finished", "1-started"]
    worker_logs = "".join(child.output(tail=None) for child in faulty.workers())
    assert f"job {job['job_id']}, delivery of attempt 1: busy" in worker_logs
    # the copy that found the job busy is dropped once the job is done: nothing is left over
    deadline = time.monotonic() + 60
    while not queue_empty(faulty):
        assert time.monotonic() < deadline, logs_of(faulty)
        time.sleep(1)


def test_a_job_three_times_the_visibility_timeout_runs_once(
    faulty: LocalSystem, api: httpx.Client
) -> None:
    seconds = 3 * VISIBILITY_S + 2
    job = submit(api, "diag.sleep", {"seconds": seconds, "mark": True})
    done = poll(
        api, faulty, job["job_id"], lambda j: j["status"] in TERMINAL, timeout_s=seconds + 60
    )
    assert (done["status"], done["attempts"]) == ("SUCCESS", 1), done
    assert marks(faulty, job["job_id"]) == ["1-finished", "1-started"]


def test_cancel_before_start_revokes_and_never_runs(faulty: LocalSystem, api: httpx.Client) -> None:
    # No gpu worker runs in this system: the job waits in its queue.
    job = submit(api, "embeddings.embed", {"texts": ["never embedded"]})
    cancelled = api.post(f"/jobs/{job['job_id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "REVOKED"
    assert api.post(f"/jobs/{job['job_id']}/cancel").status_code == 409


@pytest.mark.parametrize("report", [True, False], ids=["at-a-progress-report", "by-heartbeat"])
def test_cancel_during_a_run_stops_the_task(
    faulty: LocalSystem, api: httpx.Client, report: bool
) -> None:
    job = submit(api, "diag.sleep", {"seconds": 40, "mark": True, "report": report})
    poll(api, faulty, job["job_id"], lambda j: j["status"] == "STARTED")
    time.sleep(1.5)  # into the body
    owner = JobStore(faulty.settings()).get(job["job_id"]).lease_owner
    assert owner is not None
    pool_process = Path(f"/proc/{owner.rsplit('/', 1)[1]}")
    flagged = api.post(f"/jobs/{job['job_id']}/cancel").json()
    assert flagged["cancel_requested"] is True
    done = poll(api, faulty, job["job_id"], lambda j: j["status"] in TERMINAL, timeout_s=20)
    assert done["status"] == "REVOKED", done
    assert marks(faulty, job["job_id"]) == ["1-started"]  # the body never finished
    if not report:
        # it could not learn of the cancel itself: the heartbeat ended its pool process
        deadline = time.monotonic() + 10
        while alive(pool_process):
            assert time.monotonic() < deadline, "the task's process still runs"
            time.sleep(0.2)
    # the worker carries on: the next job runs
    after = submit(api, "diag.sleep", {"seconds": 0})
    assert poll(api, faulty, after["job_id"], lambda j: j["status"] in TERMINAL)["status"] == (
        "SUCCESS"
    )


def test_a_poison_job_retries_with_backoff_fails_and_replays_to_success(
    faulty: LocalSystem, api: httpx.Client
) -> None:
    job = submit(api, "diag.flaky", {"fail_times": 5})  # max_attempts 5: fails for good
    delays: dict[int, float] = {}
    deadline = time.monotonic() + 90
    while True:
        seen: dict[str, Any] = api.get(f"/jobs/{job['job_id']}").json()
        if seen["status"] == "RETRY" and seen["next_attempt_at"]:
            waited = datetime.fromisoformat(seen["next_attempt_at"]) - datetime.fromisoformat(
                seen["updated_at"]
            )
            delays[seen["attempts"]] = waited.total_seconds()
        if seen["status"] in TERMINAL:
            break
        assert time.monotonic() < deadline, logs_of(faulty)
        time.sleep(0.1)
    assert (seen["status"], seen["attempts"]) == ("FAILURE", 5), seen
    assert seen["error"]["type"] == "FlakyError"
    # full jitter under a ceiling that doubles: backoff_s=1 gives 1, 2, 4, 8 s
    assert delays, "no RETRY was seen"
    for attempt, delay in delays.items():
        assert 0 <= delay <= 2 ** (attempt - 1) + 0.01, delays

    letters = api.get("/dlq/cpu").json()["messages"]
    mine = [letter for letter in letters if letter["job_id"] == job["job_id"]]
    assert [letter["reason"] for letter in mine] == ["failed after 5 of 5 attempts"]

    # the operator's way: offload dlq list / replay
    listed = subprocess.run(
        [sys.executable, "-m", "infra.ops.cli", "dlq", "list", "cpu", "--api", faulty.api_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"{job['job_id']}  diag.flaky" in listed.stdout
    assert "failed after 5 of 5 attempts (FlakyError: planned failure 5 of 5)" in listed.stdout
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.ops.cli",
            "dlq",
            "replay",
            "cpu",
            "--job",
            job["job_id"],
            "--api",
            faulty.api_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.strip() == f"replayed {job['job_id']}"
    done = poll(api, faulty, job["job_id"], lambda j: j["status"] in TERMINAL)
    assert (done["status"], done["attempts"]) == ("SUCCESS", 1), done
    assert [run["attempts"] for run in done["history"]] == [5]


def test_messages_no_worker_can_run_are_dead_lettered_and_the_worker_carries_on(
    faulty: LocalSystem, api: httpx.Client
) -> None:
    sqs = boto3.client("sqs", endpoint_url=faulty.aws_url, region_name="us-east-1")
    queue = faulty.settings().queue_url("cpu")
    sqs.send_message(QueueUrl=queue, MessageBody="this is not a Celery message")
    # An application's own cpu task that these workers lack: its job must not stay PENDING.
    store = JobStore(faulty.settings())
    stranded = pending(store, "app.private_report", lane="cpu")
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=celery_protocol.encode(
            task="app.private_report",
            task_id=stranded,
            kwargs={"payload": {}, "attempt": 1},
            routing_key="cpu",
        ),
    )
    # A job of a task the workers have, whose message body cannot be read.
    garbled = pending(store, "diag.sleep", lane="cpu")
    sqs.send_message(QueueUrl=queue, MessageBody=_with_unreadable_body(garbled))
    unread = poll(api, faulty, garbled, lambda j: j["status"] in TERMINAL, timeout_s=60)
    assert unread["status"] == "FAILURE", unread
    assert unread["error"]["message"].startswith(
        "task 'diag.sleep' cannot run on the cpu lane: not a readable message"
    ), unread
    job = poll(api, faulty, stranded, lambda j: j["status"] in TERMINAL, timeout_s=60)
    assert job["status"] == "FAILURE", job
    assert job["error"]["type"] == "Unrunnable"
    assert job["error"]["message"] == (
        "task 'app.private_report' cannot run on the cpu lane: no worker of this lane has the task"
    )
    deadline = time.monotonic() + 60
    reasons: dict[str | None, str] = {}
    ours = (None, stranded, garbled)
    while len(reasons) < 3:
        assert time.monotonic() < deadline, f"{reasons}\n{logs_of(faulty)}"
        time.sleep(0.5)
        letters = api.get("/dlq/cpu").json()["messages"]
        reasons = {m["job_id"]: m["reason"] for m in letters if m["job_id"] in ours}
    assert "not a readable message" in reasons[None] or "not a Celery" in reasons[None], reasons
    assert reasons[stranded] == job["error"]["message"]
    assert reasons[garbled] == unread["error"]["message"]
    after = submit(api, "diag.sleep", {"seconds": 0})
    assert poll(api, faulty, after["job_id"], lambda j: j["status"] in TERMINAL)["status"] == (
        "SUCCESS"
    )


def _with_unreadable_body(job_id: str) -> str:
    """A Celery message for `job_id` whose envelope reads but whose body does not."""
    body = celery_protocol.encode(
        task="diag.sleep", task_id=job_id, kwargs={"payload": {}}, routing_key="cpu"
    )
    envelope = json.loads(base64.b64decode(body))
    envelope["body"] = base64.b64encode(b"[not json").decode()
    return base64.b64encode(json.dumps(envelope).encode()).decode()


@pytest.mark.parametrize(
    ("ignore_soft_limit", "error_type"),
    [(False, "SoftTimeLimitExceeded"), (True, "TimeLimitExceeded")],
    ids=["soft-limit", "hard-limit"],
)
def test_time_limits_are_recorded_and_retried_per_policy(
    faulty: LocalSystem, api: httpx.Client, ignore_soft_limit: bool, error_type: str
) -> None:
    job = submit(api, "diag.hang", {"ignore_soft_limit": ignore_soft_limit})
    done = poll(api, faulty, job["job_id"], lambda j: j["status"] in TERMINAL, timeout_s=120)
    assert (done["status"], done["attempts"]) == ("FAILURE", 2), f"{done}\n{logs_of(faulty)}"
    assert done["error"]["type"] == error_type, done
    letters = api.get("/dlq/cpu").json()["messages"]
    assert [m["reason"] for m in letters if m["job_id"] == job["job_id"]] == [
        "failed after 2 of 2 attempts"
    ]


@pytest.mark.parametrize("seconds", [1, 12], ids=["finishes-within-grace", "handed-over"])
def test_sigterm_during_a_job(faulty: LocalSystem, api: httpx.Client, seconds: int) -> None:
    job = submit(api, "diag.sleep", {"seconds": seconds, "mark": True})
    poll(api, faulty, job["job_id"], lambda j: j["status"] == "STARTED")
    worker = worker_running(faulty, job["job_id"])
    stopping = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    faulty.start_worker("cpu")  # keep two workers for the tests after this one
    assert worker.process.wait(30) == 0  # a clean, warm shutdown
    stopped_after = time.monotonic() - stopping
    faulty.children.remove(worker)
    done = poll(api, faulty, job["job_id"], lambda j: j["status"] in TERMINAL)
    assert done["status"] == "SUCCESS", f"{done}\n{logs_of(faulty)}"
    if seconds == 1:
        # within the 3 s grace: it finished where it ran
        assert done["attempts"] == 1
        assert marks(faulty, job["job_id"]) == ["1-finished", "1-started"]
    else:
        # past the grace: released, and taken over at once by the other worker rather than
        # after the visibility timeout, then finished once
        assert done["attempts"] == 2
        assert marks(faulty, job["job_id"]) == ["1-started", "2-finished", "2-started"]
        assert stopped_after < 3 + VISIBILITY_S
        handed = datetime.fromisoformat(done["started_at"]).timestamp() - time.time()
        assert handed > -(seconds + 60)  # sanity: started_at is attempt 2's own


BURST = int(os.environ.get("OFFLOAD_SOAK_BURST", "40"))


def test_a_burst_across_two_workers_ends_every_job_once(
    faulty: LocalSystem, api: httpx.Client
) -> None:
    faulty.wait_workers_ready()
    ids = [submit(api, "diag.sleep", {"seconds": 0, "mark": True})["job_id"] for _ in range(BURST)]
    deadline = time.monotonic() + 60 + BURST * 0.5
    pending = set(ids)
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} of {BURST} never ended"
        page = api.get("/jobs", params={"task": "diag.sleep", "limit": 100}).json()
        statuses = {job["job_id"]: job["status"] for job in page["jobs"]}
        for job_id in list(pending):
            status = statuses.get(job_id) or api.get(f"/jobs/{job_id}").json()["status"]
            if status in TERMINAL:
                pending.discard(job_id)
        time.sleep(0.5)
    jobs = [api.get(f"/jobs/{job_id}").json() for job_id in ids]
    assert [job["status"] for job in jobs] == ["SUCCESS"] * BURST
    runs = [marks(faulty, job_id) for job_id in ids]
    duplicates = [
        job_id
        for job_id, seen in zip(ids, runs, strict=True)
        if seen != ["1-finished", "1-started"]
    ]
    assert duplicates == [], duplicates
