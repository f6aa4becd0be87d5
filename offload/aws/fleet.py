"""The fleet: which workers serve each queue lane, when each last beat, and what it runs.

SQS has no broadcast, so Celery's remote control and events (what Flower reads) are off
(workers/app.py). Instead each worker's heartbeat (workers/heartbeat.py) puts one item per
beat into a small table of its own: partition key `lane`, sort key `worker_id` (`node/pid`),
and what the worker runs. A clean stop deletes the item; a crash leaves it, and it reads as
silent once its last beat is `SILENT_AFTER_BEATS` beats old; TTL deletes it a day later.

Sizing (DESIGN.md, "Beyond one machine"), for 500 GPU workers beating every 20 s (the
default 60 s visibility timeout / 3): 25 puts/s, each item 280 bytes with one job running
and at most ~610 with `MAX_LISTED_JOBS` listed, so one write unit each: 25 units/s on the
`gpu` partition, 2.5 % of the 1,000 a partition takes. One partition per lane holds ~20,000
such workers, so the key needs no sharding. A read is one Query page per lane: 500 items are
140-300 KB (a page holds 1 MB, ~1,600 of the largest items; `MAX_READ_WORKERS` stays under
it), 18-38 read units eventually consistent, so a dashboard polling every 2 s costs at most
~20 units/s, under 1 % of a partition's 3,000. In money: 500 workers put ~65 million items
a month, about $40 on demand, next to ~$365,000 for the instances (g5.xlarge, ~$1 an hour).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from offload.aws import clients, items
from offload.core.model import utcnow
from offload.settings import QueueLane, Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# A worker whose last beat is older than this many of its beat intervals is silent: one lost
# beat is a hiccup, three in a row a dead, hung or cut-off worker.
SILENT_AFTER_BEATS = 3
# Items of workers that crashed expire by TTL this long after their last beat.
EXPIRE_AFTER = timedelta(days=1)
# An item lists this many of the worker's running jobs (and counts them all): a few hundred
# bytes, one write unit, whatever the worker's concurrency.
MAX_LISTED_JOBS = 10
# One Query page per lane, whatever is left in the table (a crash loop leaving many items).
MAX_READ_WORKERS = 1000


class WorkerState(StrEnum):
    """How a worker looks from its last beat."""

    LIVE = "live"
    STOPPING = "stopping"  # shutting down warm: takes no new jobs, finishes its running ones
    SILENT = "silent"  # no beat for SILENT_AFTER_BEATS intervals: crashed, hung or cut off


class WorkerView(BaseModel):
    """One worker as `GET /workers`, the dashboard and `offload review` show it."""

    lane: QueueLane
    worker_id: str = Field(description="`node/pid`: unique per worker process")
    node: str = Field(description="the host it runs on")
    pid: int = Field(description="the worker's main process")
    state: WorkerState
    started_at: datetime
    last_beat: datetime
    beat_interval_s: float = Field(description="how often it beats; silent after 3 missed")
    concurrency: int | None = Field(description="jobs it runs at once (its pool processes)")
    jobs_running: int = Field(description="jobs running at its last beat")
    jobs: list[str] = Field(
        description=f"ids of the jobs running at its last beat, at most {MAX_LISTED_JOBS}"
    )


class LaneWorkers(BaseModel):
    """The workers of one queue lane, in worker id order."""

    lane: QueueLane
    live: int
    stopping: int
    silent: int
    workers: list[WorkerView]
    truncated: bool = Field(
        default=False, description=f"more than {MAX_READ_WORKERS} workers: the rest not read"
    )


@dataclass(frozen=True)
class WorkerIdentity:
    """Who a worker is: what its beats record besides the jobs it runs."""

    lanes: tuple[str, ...]
    node: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=utcnow)
    concurrency: int | None = None

    @property
    def worker_id(self) -> str:
        """`node/pid`, the item's sort key."""
        return f"{self.node}/{self.pid}"


class WorkerRegistry:
    """The workers table: beats written by workers, read per lane by the API and the review.

    :param settings: names the table.
    :param client: a DynamoDB client; the process's cached one by default.
    :param timeout_s: how long each attempt of a call may take, when shorter than the
        settings' `aws_timeout_s`.
    """

    def __init__(
        self,
        settings: Settings,
        client: DynamoDBClient | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.table = settings.workers_table_name()
        self.timeout_s = timeout_s
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client, made on first use."""
        if self._client is None:
            settings = self.settings
            if self.timeout_s is not None and self.timeout_s < settings.aws_timeout_s:
                settings = settings.model_copy(update={"aws_timeout_s": self.timeout_s})
            self._client = clients.dynamodb(settings)
        return self._client

    def beat(
        self,
        worker: WorkerIdentity,
        running: Sequence[str],
        *,
        stopping: bool = False,
        beat_interval_s: float | None = None,
        now: datetime | None = None,
    ) -> None:
        """Record one beat: one put per lane the worker serves (`offload worker` serves one).
        `AwsUnavailable` when DynamoDB cannot take it."""
        now = now or utcnow()
        interval = beat_interval_s or self.settings.heartbeat_interval_s
        for lane in worker.lanes:
            item: dict[str, AttributeValueTypeDef] = {
                "lane": {"S": lane},
                "worker_id": {"S": worker.worker_id},
                "node": {"S": worker.node},
                "pid": {"N": str(worker.pid)},
                "state": {"S": (WorkerState.STOPPING if stopping else WorkerState.LIVE).value},
                "started_at": items.timestamp(worker.started_at),
                "last_beat": items.timestamp(now),
                "beat_interval_s": {"N": str(interval)},
                "jobs_running": {"N": str(len(running))},
                "jobs": {"L": [{"S": job_id} for job_id in running[:MAX_LISTED_JOBS]]},
                "expires_at": {"N": str(int((now + EXPIRE_AFTER).timestamp()))},
            }
            if worker.concurrency is not None:
                item["concurrency"] = {"N": str(worker.concurrency)}
            with clients.unavailable_as("DynamoDB"):
                self.client.put_item(TableName=self.table, Item=item)

    def leave(self, worker: WorkerIdentity) -> None:
        """Delete the worker's items (a clean stop). `AwsUnavailable` as for `beat`."""
        for lane in worker.lanes:
            with clients.unavailable_as("DynamoDB"):
                self.client.delete_item(
                    TableName=self.table,
                    Key={"lane": {"S": lane}, "worker_id": {"S": worker.worker_id}},
                )

    def lane(self, lane: QueueLane, now: datetime | None = None) -> LaneWorkers:
        """The lane's workers, from one Query page. `AwsUnavailable` when it cannot be read."""
        now = now or utcnow()
        with clients.unavailable_as("DynamoDB"):
            out = self.client.query(
                TableName=self.table,
                KeyConditionExpression="#lane = :lane",
                ExpressionAttributeNames={"#lane": "lane"},
                ExpressionAttributeValues={":lane": {"S": lane}},
                Limit=MAX_READ_WORKERS,
            )
        # TTL deletes expired items within days, not at once: they are gone to readers now.
        found = [item for item in out.get("Items", []) if _expires(item) > now.timestamp()]
        workers = [_view(lane, item, now) for item in found]
        count = {state: sum(w.state is state for w in workers) for state in WorkerState}
        return LaneWorkers(
            lane=lane,
            live=count[WorkerState.LIVE],
            stopping=count[WorkerState.STOPPING],
            silent=count[WorkerState.SILENT],
            workers=workers,
            truncated="LastEvaluatedKey" in out,
        )


def _expires(item: dict[str, Any]) -> float:
    return float(item.get("expires_at", {}).get("N", "inf"))


def _view(lane: QueueLane, item: dict[str, Any], now: datetime) -> WorkerView:
    last_beat = datetime.fromisoformat(item["last_beat"]["S"])
    interval = float(item["beat_interval_s"]["N"])
    state = WorkerState(item["state"]["S"])
    if now - last_beat > timedelta(seconds=SILENT_AFTER_BEATS * interval):
        state = WorkerState.SILENT
    return WorkerView(
        lane=lane,
        worker_id=item["worker_id"]["S"],
        node=item["node"]["S"],
        pid=int(item["pid"]["N"]),
        state=state,
        started_at=datetime.fromisoformat(item["started_at"]["S"]),
        last_beat=last_beat,
        beat_interval_s=interval,
        concurrency=int(item["concurrency"]["N"]) if "concurrency" in item else None,
        jobs_running=int(item["jobs_running"]["N"]),
        jobs=[job["S"] for job in item["jobs"]["L"]],
    )
