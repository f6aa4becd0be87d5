"""The fleet's table: one write per heartbeat round, silent workers, clean stops, and writes
that fail without troubling the heartbeat (in process, under moto)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from offload.aws.fleet import EXPIRE_AFTER, MAX_LISTED_JOBS, WorkerIdentity, WorkerRegistry
from offload.aws.store import JobStore
from offload.core.model import utcnow
from offload.runtime import claiming
from offload.settings import Settings
from tests.integration import jobs
from workers.heartbeat import Heartbeat, lease_owner

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def counted(settings: Settings) -> tuple[WorkerRegistry, list[str]]:
    """A registry, and the operations its client sends to the workers table."""
    client = boto3.client("dynamodb")
    calls: list[str] = []

    def note(params: dict[str, Any], model: Any, **_: Any) -> None:
        if params.get("TableName") == settings.workers_table_name():
            calls.append(model.name)

    client.meta.events.register("provide-client-params.dynamodb", note)
    return WorkerRegistry(settings, client), calls


def request(job_id: str, pid: int | None) -> Any:
    """A received request as the heartbeat sees it: running when it has a pool process."""
    return SimpleNamespace(
        id=job_id,
        hostname="host",
        worker_pid=pid,
        task=SimpleNamespace(),
        message=SimpleNamespace(delivery_info={}),
    )


def running_job(store: JobStore, pid: int) -> Any:
    job_id = jobs.pending(store)
    claiming.claim(store, job_id, 1, lease_owner("host", pid), lease_s=50, max_attempts=3)
    return request(job_id, pid)


IDENTITY = WorkerIdentity(lanes=("cpu",), node="node-a", pid=41, concurrency=4)


def test_a_heartbeat_round_writes_the_worker_once_with_the_jobs_it_runs(
    settings: Settings,
) -> None:
    store = JobStore(settings)
    registry, calls = counted(settings)
    held = [running_job(store, 100), running_job(store, 101), request("received", None)]
    beat = Heartbeat(settings, None, lambda: held, registry=registry, identity=IDENTITY)

    beat.beat()
    beat.beat()

    assert calls == ["PutItem", "PutItem"]  # one per round, whatever it holds
    (worker,) = registry.lane("cpu").workers
    assert (worker.worker_id, worker.node, worker.pid) == ("node-a/41", "node-a", 41)
    assert (worker.state, worker.concurrency) == ("live", 4)
    # Running: those a pool process took; the one still waiting for a process is not.
    assert worker.jobs == [held[0].id, held[1].id] and worker.jobs_running == 2
    assert worker.beat_interval_s == settings.heartbeat_interval_s
    assert worker.started_at == IDENTITY.started_at
    assert utcnow() - worker.last_beat < timedelta(seconds=5)
    assert registry.lane("gpu").workers == []


def test_an_item_lists_a_few_jobs_and_counts_them_all(settings: Settings) -> None:
    registry = WorkerRegistry(settings)
    many = [f"job-{n}" for n in range(40)]
    registry.beat(IDENTITY, many)
    (worker,) = registry.lane("cpu").workers
    assert worker.jobs == many[:MAX_LISTED_JOBS] and worker.jobs_running == 40


def test_a_worker_is_silent_after_three_missed_beats_and_gone_after_a_day(
    settings: Settings,
) -> None:
    registry = WorkerRegistry(settings)
    then = utcnow() - timedelta(hours=1)
    registry.beat(IDENTITY, ["j"], beat_interval_s=20, now=then)

    def state_at(seconds: float) -> list[str]:
        lane = registry.lane("cpu", now=then + timedelta(seconds=seconds))
        assert lane.live + lane.stopping + lane.silent == len(lane.workers)
        return [worker.state.value for worker in lane.workers]

    assert state_at(59) == ["live"]  # two beats missed: a hiccup
    assert state_at(61) == ["silent"]
    # A stopping worker that stops beating is silent too (it hung in its shutdown).
    registry.beat(IDENTITY, [], stopping=True, beat_interval_s=20, now=then)
    assert state_at(30) == ["stopping"]
    assert state_at(61) == ["silent"]
    # TTL deletes the item within days; readers stop seeing it at its expiry.
    assert state_at(EXPIRE_AFTER.total_seconds() + 1) == []


def test_a_clean_stop_removes_the_worker_and_a_warm_shutdown_shows_as_stopping(
    settings: Settings,
) -> None:
    registry = WorkerRegistry(settings)
    beat = Heartbeat(settings, None, lambda: [], registry=registry, identity=IDENTITY)
    beat.beat()
    beat.release_after(60)  # SIGTERM: running jobs get a grace period
    beat.beat()
    assert [w.state for w in registry.lane("cpu").workers] == ["stopping"]
    beat.stop()
    assert registry.lane("cpu").workers == []


def test_a_running_heartbeat_shows_the_worker_at_once_and_removes_it_on_stop(
    settings: Settings,
) -> None:
    fast = settings.model_copy(update={"queue_visibility_timeout_s": 6})  # a beat every 2 s
    registry, calls = counted(fast)
    beat = Heartbeat(fast, None, lambda: [], registry=registry, identity=IDENTITY)
    beat.start()
    try:
        wait_until(lambda: len(registry.lane("cpu").workers) == 1, timeout_s=1.5)
        wait_until(lambda: calls.count("PutItem") >= 2, timeout_s=5)
    finally:
        beat.stop()
    assert calls[-1] == "DeleteItem"  # the last write: no beat can bring the worker back
    assert registry.lane("cpu").workers == []


def test_a_worker_that_crashed_stays_until_it_is_silent(settings: Settings) -> None:
    registry = WorkerRegistry(settings)
    beat = Heartbeat(settings, None, lambda: [], registry=registry, identity=IDENTITY)
    beat.beat()  # ...and the process is killed: no stop, no removal
    later = utcnow() + timedelta(seconds=3 * settings.heartbeat_interval_s + 1)
    assert [w.state for w in registry.lane("cpu", now=later).workers] == ["silent"]


class Unreachable:
    """A DynamoDB client whose every call fails as a flaky network makes it fail."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def put_item(self, **_: Any) -> None:
        self.calls += 1
        raise self.error

    delete_item = put_item


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        (EndpointConnectionError(endpoint_url="https://dynamodb"), "DynamoDB is unavailable"),
        (
            ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutItem"),
            "AccessDeniedException",
        ),
    ],
)
def test_a_failed_write_is_logged_once_and_the_heartbeat_goes_on(
    settings: Settings, caplog: pytest.LogCaptureFixture, error: Exception, logged: str
) -> None:
    store = JobStore(settings)
    held = [running_job(store, 100)]
    client = Unreachable(error)
    registry = WorkerRegistry(settings, cast("DynamoDBClient", client))
    beat = Heartbeat(settings, None, lambda: held, registry=registry, identity=IDENTITY)
    renewed = store.get(held[0].id).lease_expires_at
    time.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="workers.heartbeat"):
        beat.beat()
        beat.beat()
        beat.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name == "workers.heartbeat"]
    assert warnings == [
        f"worker registry: beat of node-a/41 not recorded ({_detail(error, logged)}); "
        "trying again next beat",
    ] * 2 + [
        f"worker registry: removal of node-a/41 failed ({_detail(error, logged)}); "
        "it will show as silent"
    ]
    assert client.calls == 3
    # The heartbeat's own work went on: the lease was renewed.
    current = store.get(held[0].id).lease_expires_at
    assert renewed is not None and current is not None and current > renewed


def _detail(error: Exception, logged: str) -> str:
    if isinstance(error, ClientError):
        return logged
    return f"{logged}: EndpointConnectionError"


def test_a_missing_table_is_an_outage_for_the_heartbeat(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    lost = settings.model_copy(update={"workers_table": "no-such-table"})
    beat = Heartbeat(lost, None, lambda: [], identity=IDENTITY)
    with caplog.at_level(logging.WARNING, logger="workers.heartbeat"):
        beat.beat()
    assert "DynamoDB is unavailable: ResourceNotFoundException" in caplog.text


def test_the_worker_is_known_by_the_lanes_its_celery_app_consumes(settings: Settings) -> None:
    from workers.app import create_app

    app = create_app(settings)
    app.amqp.queues.select(["gpu"])  # what `-Q gpu` does
    beat = Heartbeat(settings, SimpleNamespace(app=app, limit=2), lambda: [])
    assert beat.identity is not None
    assert (beat.identity.lanes, beat.identity.concurrency) == (("gpu",), 2)
    assert beat.identity.worker_id.endswith(f"/{beat.identity.pid}")
    # A pool without an app (tests that beat by hand) records nothing.
    assert Heartbeat(settings, None, lambda: []).identity is None


def wait_until(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def test_the_heartbeats_writes_wait_seconds_at_most(settings: Settings) -> None:
    # Not the API's 5 s an attempt: a slow write must not delay the next extensions.
    beat = Heartbeat(settings, None, lambda: [], identity=IDENTITY)
    config: Any = beat.registry.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 2.0)
    api: Any = WorkerRegistry(settings).client.meta.config
    assert api.read_timeout == settings.aws_timeout_s
