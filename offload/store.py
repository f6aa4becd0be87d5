"""The DynamoDB job store. Every change of a job is a conditional write: a stale or duplicate
writer gets `JobStateConflict` and never overwrites a newer state.

Each write also stores a fresh `write_token`. botocore retries a write whose answer was lost
(a dropped connection, a timeout after DynamoDB did it); the retry then fails its own
condition. When the item that failed it carries this write's token, the write had landed:
it counts as done, not as a conflict (else a worker would take its own claim for another's).
A caller that tries one change again itself (through an outage) passes the same `token`.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from offload import aws, items
from offload.errors import JobAlreadyExists, JobNotFound, JobStateConflict
from offload.job import Job, JobError, JobStatus, Progress, sources_of, utcnow
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
# The attribute that tells a write's own retry from another writer (see above).
WRITE_TOKEN = "write_token"


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
            self._client = aws.dynamodb(self.settings)
        return self._client

    # -- reads -----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job, read consistently; `JobNotFound` when absent."""
        if not job_id or len(job_id) > MAX_JOB_ID_CHARS:
            raise JobNotFound(job_id[:MAX_JOB_ID_CHARS])  # DynamoDB would refuse such a key
        with aws.unavailable_as("DynamoDB"):
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
            with aws.unavailable_as("DynamoDB"):
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
            with aws.unavailable_as("DynamoDB"):
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
            with aws.unavailable_as("DynamoDB"):
                out = self.client.query(**kwargs)
            jobs.extend(items.from_item(item) for item in out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                break
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        return jobs[:limit]

    # -- writes ----------------------------------------------------------------------------

    def create(self, job: Job) -> None:
        """Store a new PENDING job; `JobAlreadyExists` when its id is taken."""
        item = items.to_item(job)
        item["expires_at"] = {"N": str(self._expiry(job.created_at))}
        token = item[WRITE_TOKEN] = {"S": new_token()}
        try:
            with aws.unavailable_as("DynamoDB"):
                self.client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(job_id)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            if _landed(exc, token):
                return
            raise JobAlreadyExists(job.job_id) from None

    def discard_pending(self, job_id: str) -> None:
        """Delete a job that was never dispatched (its submit failed): no orphan PENDING."""
        self.write(
            job_id,
            "be discarded",
            delete=True,
            condition="#status = :pending AND attempts = :zero",
            values={":pending": {"S": JobStatus.PENDING.value}, ":zero": {"N": "0"}},
        )

    def report_progress(self, job_id: str, attempt: int, progress: Progress) -> None:
        """Record progress of the running attempt."""
        now = utcnow()
        self.write(
            job_id,
            "report progress",
            # A cancel request makes the report fail, which is how the task learns of it.
            condition=(
                "#status = :started AND attempts = :attempt"
                " AND attribute_not_exists(cancel_requested)"
            ),
            values={
                ":started": {"S": JobStatus.STARTED.value},
                ":attempt": {"N": str(attempt)},
                ":progress": {"S": progress.model_dump_json()},
                ":now": items.timestamp(now),
            },
            update="SET progress = :progress, updated_at = :now",
        )

    def succeed(
        self,
        job_id: str,
        attempt: int,
        result: Any,
        *,
        token: str | None = None,
        lease_owner: str | None = None,
    ) -> Job:
        """Finish the running attempt with its result (only while `lease_owner` holds it,
        when given: attempt numbers start again at a replay, lease holders do not)."""
        now = utcnow()
        return self.move(
            job_id,
            JobStatus.SUCCESS,
            token=token,
            lease_owner=lease_owner,
            attempts=attempt,
            sets={"result": {"S": json.dumps(result)}, "finished_at": items.timestamp(now)},
            removes=("error",),
            now=now,
            terminal=True,
        )

    def retry(
        self,
        job_id: str,
        attempt: int,
        error: JobError,
        next_attempt_at: datetime,
        *,
        token: str | None = None,
        lease_owner: str | None = None,
    ) -> Job:
        """Record a failed attempt that will be tried again at `next_attempt_at`."""
        return self.move(
            job_id,
            JobStatus.RETRY,
            token=token,
            lease_owner=lease_owner,
            attempts=attempt,
            sets={
                "error": {"S": error.model_dump_json()},
                "next_attempt_at": items.timestamp(next_attempt_at),
            },
        )

    def fail(
        self,
        job_id: str,
        attempt: int,
        error: JobError,
        *,
        lease_seen: datetime | None = None,
        token: str | None = None,
        lease_owner: str | None = None,
    ) -> Job:
        """Finish the job as FAILURE with the error of its last attempt."""
        now = utcnow()
        return self.move(
            job_id,
            JobStatus.FAILURE,
            token=token,
            lease_owner=lease_owner,
            attempts=attempt,
            lease_seen=lease_seen,
            sets={"error": {"S": error.model_dump_json()}, "finished_at": items.timestamp(now)},
            removes=("next_attempt_at",),
            now=now,
            terminal=True,
        )

    # -- internals -------------------------------------------------------------------------

    def _expiry(self, moment: datetime) -> int:
        return int((moment + timedelta(days=self.settings.job_retention_days)).timestamp())

    def move(
        self,
        job_id: str,
        target: JobStatus,
        *,
        attempts: int | None,
        sets: dict[str, AttributeValueTypeDef],
        sources: frozenset[JobStatus] | None = None,
        lease_seen: datetime | None = None,
        due_by: datetime | None = None,
        removes: tuple[str, ...] = (),
        now: datetime | None = None,
        terminal: bool = False,
        lease_owner: str | None = None,
        token: str | None = None,
    ) -> Job:
        """Move to `target` from one of `sources` (default: any status DESIGN.md allows),
        only while the job has made `attempts` attempts (None: any number), its lease is the
        one the caller saw (and held by `lease_owner`) and its retry is due by `due_by` (when
        given). The conditional
        write behind every change."""
        now = now or utcnow()
        allowed = sources_of(target)
        if target is JobStatus.STARTED:
            # A takeover keeps STARTED and only advances the attempt: not a status change.
            allowed = allowed | {JobStatus.STARTED}
        if sources is not None and not sources <= allowed:
            raise ValueError(f"{sorted(sources)} -> {target.value}: not moves DESIGN.md allows")
        values: dict[str, AttributeValueTypeDef] = {
            f":from{i}": {"S": status.value}
            for i, status in enumerate(sorted(sources if sources is not None else allowed))
        }
        condition = f"#status IN ({', '.join(values)})"
        if attempts is not None:
            condition += " AND attempts = :expected"
            values[":expected"] = {"N": str(attempts)}
        if lease_seen is not None:
            condition += " AND lease_expires_at = :lease_seen"
            values[":lease_seen"] = items.timestamp(lease_seen)
        if lease_owner is not None:
            condition += " AND lease_owner = :lease_owner"
            values[":lease_owner"] = {"S": lease_owner}
        if due_by is not None:
            # Timestamps are fixed-width ISO strings: string order is time order.
            condition += " AND (attribute_not_exists(next_attempt_at) OR next_attempt_at <= :due)"
            values[":due"] = items.timestamp(due_by)
        assignments: dict[str, AttributeValueTypeDef] = {
            **sets,
            "status": {"S": target.value},
            "updated_at": items.timestamp(now),
        }
        if terminal:
            assignments["expires_at"] = {"N": str(self._expiry(now))}
            # Out of the sweeps' index and the caller's in-flight count once it ends.
            removes = (*removes, "inflight", "inflight_caller")
        if target is JobStatus.FAILURE:
            assignments["failed"] = {"S": items.failed_key(job_id)}  # into the review's
        names = {f"#f{i}": name for i, name in enumerate(assignments)}
        update = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(assignments)))
        values.update({f":v{i}": value for i, value in enumerate(assignments.values())})
        if removes:
            names.update({f"#r{i}": name for i, name in enumerate(removes)})
            update += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removes)))
        item = self.write(
            job_id,
            f"move to {target.value}",
            condition=condition,
            values=values,
            names=names,
            update=update,
            token=token,
        )
        assert item is not None
        return items.from_item(item)

    def write(
        self,
        job_id: str,
        wanted: str,
        *,
        condition: str,
        values: dict[str, AttributeValueTypeDef],
        names: dict[str, str] | None = None,
        update: str | None = None,
        delete: bool = False,
        token: str | None = None,
    ) -> dict[str, AttributeValueTypeDef] | None:
        names = {"#status": "status", **(names or {})}
        key: dict[str, AttributeValueTypeDef] = {"job_id": {"S": job_id}}
        written: AttributeValueTypeDef = {"S": token or new_token()}
        if update is not None:
            names["#wt"] = WRITE_TOKEN
            values = {**values, ":wt": written}
            sets = update.removeprefix("SET ")
            # One SET clause per expression: the token joins the caller's, or starts one.
            update = f"SET #wt = :wt, {sets}" if sets != update else f"SET #wt = :wt {update}"
        try:
            with aws.unavailable_as("DynamoDB"):
                if delete:
                    self.client.delete_item(
                        TableName=self.table,
                        Key=key,
                        ConditionExpression=condition,
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues=values,
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                    return None
                out = self.client.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression=update or "",
                    ConditionExpression=f"attribute_exists(job_id) AND {condition}",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return dict(out["Attributes"])
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = getattr(exc, "response", {}).get("Item")
            if update is not None and old and _landed(exc, written):
                return dict(old)  # this write's own retry: the item is as it left it
            raise JobStateConflict(job_id, wanted, items.from_item(old) if old else None) from None


def _landed(exc: BaseException, token: AttributeValueTypeDef) -> bool:
    """Whether the item that failed a write's condition is the one that write left."""
    old = getattr(exc, "response", {}).get("Item") or {}
    return bool(old.get(WRITE_TOKEN) == token)


def new_token() -> str:
    """A write token: one per change a caller means to make, however often it is sent."""
    return uuid.uuid4().hex
