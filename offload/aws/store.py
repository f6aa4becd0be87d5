"""The DynamoDB job store. Every change of a job is a conditional write: a stale or duplicate
writer gets `JobStateConflict` and never overwrites a newer state.

Each write also stores a fresh `write_token`. botocore retries a write whose answer was lost
(a dropped connection, a timeout after DynamoDB did it); the retry then fails its own
condition. When the item that failed it carries this write's token, the write had landed:
it counts as done, not as a conflict (else a worker would take its own claim for another's).
A caller that tries one change again itself (through an outage) passes the same `token`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from offload.aws import clients, items, transitions
from offload.aws.writes import WRITE_TOKEN, Write
from offload.core.model import Job, JobStatus, utcnow
from offload.errors import JobAlreadyExists, JobNotFound, JobStateConflict
from offload.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# The index behind `GET /jobs`: a caller's jobs, newest first.
CALLER_INDEX = "caller-created"
# Sparse indexes, sharded (items.INDEX_SHARDS): jobs not yet ended, by lane (the sweeps);
# failed jobs (the alarm review). Both by time of last change.
INFLIGHT_INDEX = "inflight-updated"
FAILED_INDEX = "failed-updated"
# Sparse: the keys of a caller's jobs not yet ended (the in-flight quota counts them).
CALLER_INFLIGHT_INDEX = "caller-inflight"
# Ids are UUIDs; anything much longer cannot be a job (and nears DynamoDB's key limit).
MAX_JOB_ID_CHARS = 128


class JobStore:
    """Jobs in one DynamoDB table, keyed by `job_id`.

    :param settings: names the table and the retention period.
    :param client: a DynamoDB client; the process's cached one by default.
    """

    def __init__(self, settings: Settings, client: DynamoDBClient | None = None) -> None:
        self.settings = settings
        self.table = settings.table_name()
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client, made on first use."""
        if self._client is None:
            self._client = clients.dynamodb(self.settings)
        return self._client

    # -- reads -----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job, read consistently; `JobNotFound` when absent."""
        if not job_id or len(job_id) > MAX_JOB_ID_CHARS:
            raise JobNotFound(job_id[:MAX_JOB_ID_CHARS])  # DynamoDB would refuse such a key
        with clients.unavailable_as("DynamoDB"):
            out = self.client.get_item(
                TableName=self.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
            )
        if "Item" not in out:
            raise JobNotFound(job_id)
        return items.from_item(out["Item"])

    def list_for_caller(
        self,
        caller: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: JobStatus | None = None,
        task: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """A page of the caller's jobs, newest first, and the cursor of the next page."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": CALLER_INDEX,
            "KeyConditionExpression": "caller = :caller",
            "ExpressionAttributeValues": {":caller": {"S": caller}},
            "ScanIndexForward": False,
        }
        filters, names = [], {}
        if status is not None:
            filters.append("#status = :status")
            names["#status"] = "status"
            kwargs["ExpressionAttributeValues"][":status"] = {"S": status.value}
        if task is not None:
            filters.append("#task = :task")
            names["#task"] = "task"
            kwargs["ExpressionAttributeValues"][":task"] = {"S": task}
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
            kwargs["ExpressionAttributeNames"] = names
        start = items.decode_cursor(cursor, caller) if cursor else None
        jobs: list[Job] = []
        # A filter can empty a page; keep reading until the page is full or the index ends.
        while len(jobs) < limit:
            if start:
                kwargs["ExclusiveStartKey"] = start
            kwargs["Limit"] = limit - len(jobs) if not filters else max(limit * 4, 25)
            with clients.unavailable_as("DynamoDB"):
                out = self.client.query(**kwargs)
            found = out.get("Items", [])
            start = out.get("LastEvaluatedKey")
            for n, item in enumerate(found):
                jobs.append(items.from_item(item))
                if len(jobs) == limit:
                    if n + 1 < len(found) or start:
                        start = items.key_of(item)
                    break
            if not start:
                break
        return jobs, (items.encode_cursor(start, caller) if start else None)

    def in_flight(
        self,
        lane: str,
        changed_before: datetime,
        limit: int = 100,
        status: JobStatus | None = None,
    ) -> list[Job]:
        """Up to `limit` jobs of `lane` not yet ended (or in `status`) and unchanged since
        `changed_before`, the longest unchanged first (the sweeps' work)."""
        jobs: list[Job] = []
        for shard in range(items.INDEX_SHARDS):
            jobs += self._query_index(
                INFLIGHT_INDEX,
                "inflight = :key AND updated_at < :moment",
                {":key": {"S": f"{lane}#{shard}"}, ":moment": items.timestamp(changed_before)},
                limit,
                oldest_first=True,
                status=status,
            )
        return sorted(jobs, key=lambda job: job.updated_at)[:limit]

    def count_in_flight(self, caller: str, up_to: int) -> int:
        """How many of the caller's jobs created within `quota_window_s` have not ended,
        counted up to `up_to` (no further: the quota only asks whether the limit is
        reached). Eventually consistent."""
        since = utcnow() - timedelta(seconds=self.settings.quota_window_s)
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": CALLER_INFLIGHT_INDEX,
            "KeyConditionExpression": "inflight_caller = :caller AND created_at > :since",
            "ExpressionAttributeValues": {
                ":caller": {"S": caller},
                ":since": items.timestamp(since),
            },
            "Select": "COUNT",
        }
        count = 0
        while count < up_to:
            kwargs["Limit"] = up_to - count
            with clients.unavailable_as("DynamoDB"):
                out = self.client.query(**kwargs)
            count += out.get("Count", 0)
            if "LastEvaluatedKey" not in out:
                break
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        return count

    def failed_since(self, since: datetime, limit: int = 200) -> list[Job]:
        """Up to `limit` jobs that failed (or changed while failed) after `since`, newest
        first (the alarm review)."""
        jobs: list[Job] = []
        for shard in range(items.INDEX_SHARDS):
            jobs += self._query_index(
                FAILED_INDEX,
                "failed = :key AND updated_at > :moment",
                {":key": {"S": f"FAILURE#{shard}"}, ":moment": items.timestamp(since)},
                limit,
                oldest_first=False,
            )
        return sorted(jobs, key=lambda job: job.updated_at, reverse=True)[:limit]

    def _query_index(
        self,
        index: str,
        condition: str,
        values: dict[str, AttributeValueTypeDef],
        limit: int,
        *,
        oldest_first: bool,
        status: JobStatus | None = None,
    ) -> list[Job]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": dict(values),
            "ScanIndexForward": oldest_first,
            # Filtered reads count before the filter: read pages, not single items.
            "Limit": limit if status is None else max(limit, 25),
        }
        if status is not None:
            # Applied after `Limit` reads: the loop below reads on until `limit` match.
            kwargs["FilterExpression"] = "#status = :status"
            kwargs["ExpressionAttributeNames"] = {"#status": "status"}
            kwargs["ExpressionAttributeValues"][":status"] = {"S": status.value}
        jobs: list[Job] = []
        while len(jobs) < limit:
            with clients.unavailable_as("DynamoDB"):
                out = self.client.query(**kwargs)
            jobs.extend(items.from_item(item) for item in out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                break
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        return jobs[:limit]

    # -- writes: every change is a named transition (offload.aws.transitions) ---------------

    def apply(self, write: Write, *, token: str | None = None) -> Job:
        """Make `write`, an update; the job as it left it.

        `JobStateConflict` when another writer's change failed the condition. `token`: the
        same for every try of one change (see above); fresh by default.
        """
        if write.item is not None or write.delete:
            raise ValueError(f"{write.transition.value} is not an update: use create or remove")
        item = self._send(write, token)
        assert item is not None
        return items.from_item(item)

    def remove(self, write: Write) -> None:
        """Make `write`, a deleting one (a job never dispatched)."""
        if not write.delete:
            raise ValueError(f"{write.transition.value} does not delete the job")
        self._send(write, None)

    def discard_pending(self, job_id: str) -> None:
        """Delete a job that was never dispatched (its submit failed): no orphan PENDING."""
        self.remove(transitions.discard(job_id))

    def create(self, job: Job) -> None:
        """Store a new PENDING job; `JobAlreadyExists` when its id is taken."""
        self._send(transitions.create(job), None)

    def _expiry(self, moment: datetime) -> int:
        return int((moment + timedelta(days=self.settings.job_retention_days)).timestamp())

    def _send(self, write: Write, token: str | None) -> dict[str, AttributeValueTypeDef] | None:
        written: AttributeValueTypeDef = {"S": token or new_token()}
        expires_at = self._expiry(write.expires_from) if write.expires_from else None
        request = write.request(self.table, written, expires_at)
        try:
            with clients.unavailable_as("DynamoDB"):
                if write.item is not None:
                    self.client.put_item(**request)
                    return None
                if write.delete:
                    self.client.delete_item(**request)
                    return None
                return dict(self.client.update_item(**request)["Attributes"])
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = getattr(exc, "response", {}).get("Item")
            if not write.delete and old and _landed(exc, written):
                return dict(old)  # this write's own retry: the item is as it left it
            if write.item is not None:
                raise JobAlreadyExists(write.job_id) from None
            current = items.from_item(old) if old else None
            raise JobStateConflict(write.job_id, write.wanted, current) from None


def _landed(exc: BaseException, token: AttributeValueTypeDef) -> bool:
    """Whether the item that failed a write's condition is the one that write left."""
    old = getattr(exc, "response", {}).get("Item") or {}
    return bool(old.get(WRITE_TOKEN) == token)


def new_token() -> str:
    """A write token: one per change a caller means to make, however often it is sent."""
    return uuid.uuid4().hex
