"""How a job is laid out in DynamoDB, and the opaque cursors of `GET /jobs`.

Structured fields (payload, result, error, progress) are stored as JSON strings: DynamoDB
numbers would come back as `Decimal` and its maps cannot hold floats.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from offload.core.model import Job, isoformat

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

_JSON_FIELDS = ("payload", "result", "error", "progress", "history")
_TIME_FIELDS = (
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "next_attempt_at",
    "lease_expires_at",
)


# The sparse indexes' keys are spread over this many values each (`gpu#2`, `FAILURE#0`):
# one value per lane or status would put every such write on one partition (DESIGN.md).
INDEX_SHARDS = 4


def _shard(job_id: str) -> int:
    return zlib.crc32(job_id.encode()) % INDEX_SHARDS


def inflight_key(job_id: str, lane: str) -> str:
    """A job's key in the in-flight index, held until the job ends: its lane and shard."""
    return f"{lane}#{_shard(job_id)}"


def failed_key(job_id: str) -> str:
    """A failed job's key in the failures index, held until a replay or its expiry."""
    return f"FAILURE#{_shard(job_id)}"


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class InvalidCursor(ValueError):
    """A pagination cursor that this store did not issue."""


def timestamp(moment: datetime) -> AttributeValueTypeDef:
    """A time as a DynamoDB string attribute."""
    return {"S": isoformat(moment)}


def to_item(job: Job) -> dict[str, AttributeValueTypeDef]:
    """The DynamoDB item of a job."""
    item: dict[str, AttributeValueTypeDef] = {
        "job_id": {"S": job.job_id},
        "task": {"S": job.task},
        "lane": {"S": job.lane},
        "status": {"S": job.status.value},
        "attempts": {"N": str(job.attempts)},
        "max_attempts": {"N": str(job.max_attempts)},
        "caller": {"S": job.caller},
        "payload": {"S": json.dumps(job.payload)},
    }
    for name in _TIME_FIELDS:
        value = getattr(job, name)
        if value is not None:
            item[name] = timestamp(value)
    if job.progress is not None:
        item["progress"] = {"S": job.progress.model_dump_json()}
    if job.error is not None:
        item["error"] = {"S": job.error.model_dump_json()}
    if job.result is not None:
        item["result"] = {"S": json.dumps(job.result)}
    if job.idempotency_key is not None:
        item["idempotency_key"] = {"S": job.idempotency_key}
    if job.history:
        item["history"] = {"S": json.dumps([run.model_dump(mode="json") for run in job.history])}
    if job.cancel_requested:
        item["cancel_requested"] = {"BOOL": True}
    if job.lease_owner is not None:
        item["lease_owner"] = {"S": job.lease_owner}
    if job.request_hash is not None:
        item["request_hash"] = {"S": job.request_hash}
    if job.request_id is not None:
        item["request_id"] = {"S": job.request_id}
    if not job.status.terminal:
        # The sweep's sparse index: jobs until they end (the store's transitions removes the key).
        item["inflight"] = {"S": inflight_key(job.job_id, job.lane)}
        item["inflight_caller"] = {"S": job.caller}  # the in-flight quota's count
    elif job.status.value == "FAILURE":
        item["failed"] = {"S": failed_key(job.job_id)}
    for name in ("input_location", "output_location", "failure_location", "parent_id"):
        value = getattr(job, name)
        if value is not None:
            item[name] = {"S": value}
    return item


def from_item(item: dict[str, Any]) -> Job:
    """The job of a DynamoDB item."""
    data: dict[str, Any] = {}
    for name, value in item.items():
        if "S" in value:
            data[name] = value["S"]
        elif "N" in value:
            data[name] = int(value["N"])
        elif "BOOL" in value:
            data[name] = value["BOOL"]
    for name in _JSON_FIELDS:
        if name in data:
            data[name] = json.loads(data[name])
    data.pop("expires_at", None)
    data.pop("inflight", None)
    data.pop("inflight_caller", None)
    data.pop("failed", None)
    data.pop("write_token", None)
    return Job.model_validate(data)


def key_of(item: dict[str, Any]) -> dict[str, Any]:
    """The caller index's key of an item: where the next page starts."""
    return {name: item[name] for name in ("job_id", "caller", "created_at")}


def encode_cursor(key: dict[str, Any], caller: str) -> str:
    """An opaque cursor for `key` (a key of the caller's own listing)."""
    plain = {name: value["S"] for name, value in key.items()}
    raw = json.dumps(plain, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, caller: str) -> dict[str, Any]:
    """The key of a cursor; `InvalidCursor` unless it is well formed and the caller's own."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        fields = {name: data[name] for name in ("job_id", "caller", "created_at")}
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidCursor("cursor is not one this API issued") from None
    if fields["caller"] != caller:
        raise InvalidCursor("cursor belongs to another caller's listing")
    # DynamoDB refuses a malformed start key with an error of its own: refuse it here.
    if not all(isinstance(value, str) and 0 < len(value) <= 128 for value in fields.values()):
        raise InvalidCursor("cursor is not one this API issued")
    if not _TIMESTAMP.fullmatch(fields["created_at"]):
        raise InvalidCursor("cursor is not one this API issued")
    return {name: {"S": value} for name, value in fields.items()}
