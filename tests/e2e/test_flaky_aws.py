"""Jobs through a flaky AWS: every process (API, workers, the local event sources) reaches
the local AWS through `infra.local.fault_proxy`, which refuses, drops after doing, and slows a
few percent of the requests of every service. Outcomes are counted, not only statuses:

- every submit, retried by its client with the same idempotency key, gives exactly one job;
- every job ends, and ends SUCCESS;
- no task body completes twice (diag.sleep's S3 marks: one `-finished` per job);
- no worker exits (workers killed on purpose are restarted and counted apart).

`make test` runs a few dozen jobs; `make soak` runs hundreds at higher rates with worker
kills (OFFLOAD_FLAKY_JOBS, _RATE, _KILLS, _SECONDS). RELIABILITY.md has the figures.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest

from infra.local.dev import LocalSystem, free_port
from infra.local.fault_plan import FaultPlan, Rates
from tests.e2e.conftest import TERMINAL, logs_of

pytestmark = pytest.mark.e2e

JOBS = int(os.environ.get("OFFLOAD_FLAKY_JOBS", "30"))
RATE = float(os.environ.get("OFFLOAD_FLAKY_RATE", "0.03"))
KILLS = int(os.environ.get("OFFLOAD_FLAKY_KILLS", "0"))
SEED = int(os.environ.get("OFFLOAD_FLAKY_SEED", "14"))
# How long each job's body runs (longer: more kills land mid-body).
SECONDS = float(os.environ.get("OFFLOAD_FLAKY_SECONDS", "0.3"))
VISIBILITY_S = 6
# How long every job has to end, past the last submit.
SETTLE_S = float(os.environ.get("OFFLOAD_FLAKY_SETTLE_S", str(120 + JOBS)))


def plan(rate: float) -> FaultPlan:
    """`rate` of each fault on every AWS service, slowed requests by a second."""
    return FaultPlan(seed=SEED, rates={"*": Rates(refuse=rate, drop=rate, slow=rate)}, slow_s=1.0)


@dataclass
class Tally:
    """What the client saw while submitting."""

    jobs: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    tries: Counter[str] = field(default_factory=Counter)  # what each failed try got


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """Two cpu workers and the API, all of whose AWS traffic crosses the fault proxy."""
    system = LocalSystem(
        aws_port=free_port(),
        api_port=free_port(),
        lanes=("cpu", "cpu"),
        log_dir=tmp_path_factory.mktemp("flaky-logs"),
        visibility_timeout_s=VISIBILITY_S,
        faults=FaultPlan.none(),  # the proxy is in place; faults start with the test
    )
    with system.running(ready_timeout_s=90):
        yield system


def submit_until_accepted(api: httpx.Client, key: str, tally: Tally) -> None:
    """POST /jobs as a careful client does: the same idempotency key until a 202."""
    body = {"task": "diag.sleep", "payload": {"seconds": SECONDS, "mark": True}}
    for _ in range(40):
        try:
            response = api.post("/jobs", json={**body, "idempotency_key": key})
        except httpx.TransportError as exc:
            tally.tries[type(exc).__name__] += 1
        else:
            if response.status_code == 202:
                job_id = response.json()["job_id"]
                assert tally.jobs.setdefault(key, job_id) == job_id, "a key named two jobs"
                return
            assert response.status_code >= 500 or response.status_code == 429, response.text
            tally.tries[str(response.status_code)] += 1
        time.sleep(0.2)
    pytest.fail(f"submit {key} never accepted: {tally.tries}")


def every_job(system: LocalSystem) -> list[dict[str, Any]]:
    """Every item of the jobs table, read from moto directly (past the proxy)."""
    dynamodb = boto3.client("dynamodb", endpoint_url=system.aws_url, region_name="us-east-1")
    pages = dynamodb.get_paginator("scan").paginate(TableName=system.settings().table_name())
    return [item for page in pages for item in page["Items"]]


def marks(system: LocalSystem, what: str) -> dict[str, dict[int, int]]:
    """The task bodies that started or finished: per job id, each attempt's worker pid
    (diag.sleep's S3 marks)."""
    s3 = boto3.client("s3", endpoint_url=system.aws_url, region_name="us-east-1")
    bucket = system.settings().bucket_name()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="jobs/")
    done: dict[str, dict[int, int]] = {}
    for page in pages:
        for item in page.get("Contents", []):
            _, job_id, *rest = item["Key"].split("/")
            if rest[:1] == ["marks"] and rest[-1].endswith(f"-{what}"):
                pid = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                done.setdefault(job_id, {})[int(rest[-1].split("-")[0])] = int(pid)
    return done


def kill_oldest_worker(system: LocalSystem) -> int:
    """SIGKILL the oldest worker's process group mid-run and replace it, as `offload dev` and
    systemd do. Waits for the replacement: a cpu worker holds up to 16 messages (its
    prefetch, raised for batched tasks), and a message that met a dying worker on each of
    its five receives would be dead-lettered by SQS (then failed by the sweep), which is a
    fault of the test's pace, not of the engine."""
    victim = system.workers()[0]
    system.kill(victim)
    system.start_worker("cpu")
    system.wait_workers_ready(timeout_s=90)
    return victim.process.pid


def test_jobs_through_a_flaky_aws_end_once_and_no_worker_exits(flaky: LocalSystem) -> None:
    assert flaky.proxy is not None
    flaky.proxy.set_plan(plan(RATE))
    tally = Tally()
    killed: list[int] = []  # the pids of the workers killed
    # Kills spread over the run, by jobs ended: one every JOBS / (KILLS + 1).
    kill_after = [JOBS * (k + 1) // (KILLS + 1) for k in range(KILLS)]
    with httpx.Client(base_url=flaky.api_url, timeout=30) as api:
        for n in range(JOBS):
            submit_until_accepted(api, f"flaky-{SEED}-{n}-{uuid.uuid4().hex[:6]}", tally)
        deadline = time.monotonic() + SETTLE_S
        statuses: dict[str, str] = {}
        attempts: dict[str, int] = {}
        while time.monotonic() < deadline:
            items = every_job(flaky)
            statuses = {item["job_id"]["S"]: item["status"]["S"] for item in items}
            attempts = {item["job_id"]["S"]: int(item["attempts"]["N"]) for item in items}
            ended = sum(status in TERMINAL for status in statuses.values())
            if ended == len(statuses):
                break
            if kill_after and ended >= kill_after[0]:
                kill_after.pop(0)
                killed.append(kill_oldest_worker(flaky))
            flaky.check_alive()
            time.sleep(1)
    counts = flaky.proxy.counts()
    flaky.proxy.set_plan(FaultPlan.none())
    finished, started = marks(flaky, "finished"), marks(flaky, "started")
    outcome = Counter(statuses.values())
    interrupted = sum(map(len, started.values())) - sum(map(len, finished.values()))
    # A body finished, but its worker was killed before recording it: the takeover runs it
    # again, as at-least-once delivery must. Any other second completion is a defect.
    unrecorded = {
        (job, attempt): pid
        for job, runs in finished.items()
        for attempt, pid in runs.items()
        if attempt != attempts.get(job)
    }
    report = (
        f"{JOBS} jobs of {SECONDS:g} s, {len(killed)} worker kills, rate {RATE} of each fault, "
        f"seed {SEED}: {dict(outcome)}; bodies interrupted and run again {interrupted}; "
        f"bodies finished but not recorded, their worker killed {len(unrecorded)}; "
        f"client retries {dict(tally.tries)}; faults {counts.total()} of "
        f"{sum(counts.requests.values())} AWS requests: {counts.as_json()['faults']}"
    )
    print(report)  # noqa: T201 - the figures RELIABILITY.md quotes
    # Exactly one job per idempotency key, and nothing else in the table.
    assert len(tally.jobs) == JOBS
    assert sorted(statuses) == sorted(tally.jobs.values()), report
    # Every job ended, and ended well: nothing was lost to a fault.
    assert outcome == Counter({"SUCCESS": JOBS}), f"{report}\n{logs_of(flaky)}"
    # Every job's recorded attempt finished its body; no body completed twice but those
    # whose worker was killed between the body's end and its record.
    assert all(attempts[job] in finished.get(job, {}) for job in statuses), report
    assert {run: pid for run, pid in unrecorded.items() if pid not in killed} == {}, report
    # The faults really happened: to every service, and of every kind.
    faulted = [(key.split(":")[0], key.split(":")[-1]) for key in counts.as_json()["faults"]]
    assert {service for service, _ in faulted} >= {"sqs", "dynamodb", "s3"}, report
    assert {fault for _, fault in faulted} == {"refuse", "drop", "slow"}, report
    # No worker exited but those killed on purpose.
    flaky.check_alive()
    for child in flaky.workers():
        assert "Unrecoverable error" not in child.output(tail=None), child.name
