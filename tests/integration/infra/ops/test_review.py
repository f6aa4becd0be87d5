"""`offload review` on the local stack: alarms put into ALARM and INSUFFICIENT_DATA come
first with their guidance; queues, grouped failures and stuck jobs follow."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest

import tasks
from infra.ops import cli
from infra.ops.review import Reviewer, render
from offload.aws import transitions
from offload.aws.dlq import bury
from offload.aws.fleet import WorkerIdentity, WorkerRegistry
from offload.aws.store import JobStore
from offload.core.model import JobError, utcnow
from offload.runtime import claiming
from offload.settings import Settings
from tests.integration import jobs


def failed(store: JobStore, task: str, error: str, message: str) -> str:
    job_id = jobs.pending(store, task, payload={})
    claiming.claim(store, job_id, 1, "w/1", lease_s=60, max_attempts=1)
    store.apply(transitions.fail(job_id, 1, JobError(type=error, message=message)))
    return job_id


@pytest.fixture
def incident(settings: Settings) -> dict[str, str]:
    """A bad hour: two alarms not OK, failures of two kinds, a dead letter, a stuck job."""
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.set_alarm_state(
        AlarmName="offload-gpu-dead-letters",
        StateValue="ALARM",
        StateReason="Threshold Crossed: 1 datapoint [3.0] was greater than the threshold (0.0).",
    )
    cloudwatch.set_alarm_state(
        AlarmName="offload-cpu-stuck-jobs",
        StateValue="INSUFFICIENT_DATA",
        StateReason="no datapoints: is the sweep running?",
    )
    store = JobStore(settings)
    for _ in range(3):
        failed(store, "embeddings.embed", "OutOfMemoryError", "CUDA out of memory")
    latest = failed(store, "embeddings.embed", "OutOfMemoryError", "CUDA out of memory (3 GiB)")
    failed(store, "reports.pdf", "InvalidPayload", "rows: too many")
    bury(settings, "gpu", "body", "failed after 3 of 3 attempts", job_id=latest)
    stuck = jobs.started_ago(
        store, "diag.sleep", lane="cpu", hours=3, payload={"seconds": 600}, owner="host/7"
    )
    return {"latest": latest, "stuck": stuck}


def test_the_review_puts_what_fires_first_with_what_to_do(
    settings: Settings, incident: dict[str, str]
) -> None:
    review = Reviewer(settings, tasks.catalog()).review()
    assert [(a.name, a.state) for a in review.alarms] == [
        ("offload-gpu-dead-letters", "ALARM"),
        ("offload-cpu-stuck-jobs", "INSUFFICIENT_DATA"),
    ]
    assert review.alarms[0].guidance.startswith("Jobs of the gpu lane failed for good")
    assert "offload dlq replay gpu" in review.alarms[0].guidance
    assert review.alarms_ok >= 10
    gpu = {q.lane: q for q in review.queues}["gpu"]
    assert gpu.dead_letters == 1
    groups = [(g.task, g.error_type, g.count) for g in review.failures]
    assert groups == [
        ("embeddings.embed", "OutOfMemoryError", 4),
        ("reports.pdf", "InvalidPayload", 1),
    ]
    assert review.failures[0].latest_job_id == incident["latest"]
    assert review.failures[0].latest_message == "CUDA out of memory (3 GiB)"
    assert [(s.job_id, s.owner) for s in review.stuck] == [(incident["stuck"], "host/7")]
    assert review.problems == []

    text = render(review)
    assert text.index("[ALARM] offload-gpu-dead-letters") < text.index(
        "[INSUFFICIENT_DATA] offload-cpu-stuck-jobs"
    )
    assert "offload dlq replay gpu" in text and "why: Threshold Crossed" in text
    assert "embeddings.embed" in text and incident["stuck"] in text


def test_failures_older_than_the_window_are_left_out(
    settings: Settings, incident: dict[str, str]
) -> None:
    review = Reviewer(settings, tasks.catalog()).review(since=timedelta(seconds=0))
    assert review.failures == []


def test_the_command_prints_json_for_scripts_and_exits_1_while_alarms_fire(
    settings: Settings, incident: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["review", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["alarms"][0]["name"] == "offload-gpu-dead-letters"
    assert data["stuck"][0]["job_id"] == incident["stuck"]
    assert {q["lane"] for q in data["queues"]} == {"cpu", "gpu"}


def test_a_quiet_stack_reviews_clean(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["review"]) == 0
    out = capsys.readouterr().out
    assert "ALARMS: 0 not OK" in out
    assert "  cpu: no workers\n  gpu: no workers\n" in out
    assert "FAILURES since" in out and "STUCK" in out


def test_the_review_lists_each_lanes_workers_and_flags_the_silent_ones(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = WorkerRegistry(settings)
    busy = WorkerIdentity(lanes=("cpu",), node="node-a", pid=11, concurrency=4)
    registry.beat(busy, ["job-1", "job-2"])
    then = utcnow() - timedelta(minutes=7)
    crashed = WorkerIdentity(
        lanes=("gpu",), node="node-b", pid=22, concurrency=1, started_at=then - timedelta(hours=1)
    )
    registry.beat(crashed, ["job-3"], now=then)

    review = Reviewer(settings, tasks.catalog()).review()
    lanes = {lane.lane: lane for lane in review.workers}
    assert (lanes["cpu"].live, lanes["gpu"].silent) == (1, 1)

    assert cli.main(["review"]) == 0  # a silent worker is shown, not an alarm
    out = capsys.readouterr().out
    section = out[out.index("WORKERS") : out.index("FAILURES")]
    lines = [line.split() for line in section.splitlines()]
    assert ["cpu:", "1", "live"] in lines
    assert ["gpu:", "0", "live,", "1", "SILENT"] in lines
    cpu = next(line for line in lines if line[:1] == ["node-a/11"])
    assert (cpu[1], cpu[3:5]) == ("live", ["s", "ago"])
    assert cpu[-5:] == ["2", "of", "4", "job-1,", "job-2"]
    gpu = next(line for line in lines if line[:1] == ["node-b/22"])
    assert gpu[1:4] == ["SILENT", "7", "min"] and gpu[-1] == "job-3"
