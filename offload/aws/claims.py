"""Claim check: payloads and results too large to travel in an SQS message or a job record.

SQS stops a message at 256 KiB and DynamoDB an item at 400 KB, and every read of a job
record pays for all of it. So a payload or result whose JSON is larger than
`Settings.claim_check_bytes` is kept in the results bucket under the job's prefix, and the
message and the record carry a claim instead:

    {"$claim": {"uri": "s3://<bucket>/jobs/<job id>/payload-<sha256 prefix>.json",
                "bytes": 312345, "sha256": "<hex>"}}

A claim is resolved only where the value is used (a worker validating the payload, a job
reading the result of a job it waited for); clients get a large result as a presigned URL.
Object keys carry a digest of their contents: a repeated write (an idempotent submit, a
duplicated attempt) writes the same bytes to the same key, and a different payload under
a reused idempotency key never overwrites the job's own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from offload.aws import clients
from offload.core.model import Job, utcnow
from offload.errors import PermanentFailure
from offload.settings import Settings

MARKER = "$claim"


class ClaimUnusable(PermanentFailure):
    """A claim's object is gone, altered or not the job's own: no retry brings it back."""


@dataclass(frozen=True)
class Claim:
    """Where a value kept in S3 is, how long it is, and (for our own objects) its digest."""

    uri: str
    bytes: int
    sha256: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The claim as it travels in place of the value."""
        return {MARKER: {"uri": self.uri, "bytes": self.bytes, "sha256": self.sha256}}


@dataclass(frozen=True)
class Download:
    """A presigned URL for a value kept in S3, valid until `expires_at`."""

    url: str
    bytes: int
    expires_at: datetime


def claim_of(value: Any) -> Claim | None:
    """The claim `value` is, or None when it is a value of its own."""
    if not isinstance(value, dict) or set(value) != {MARKER}:
        return None
    inner = value[MARKER]
    if not isinstance(inner, dict):
        return None
    uri, size, digest = inner.get("uri"), inner.get("bytes"), inner.get("sha256")
    if not (isinstance(uri, str) and uri.startswith("s3://") and isinstance(size, int)):
        return None
    if digest is not None and not isinstance(digest, str):
        return None
    return Claim(uri, size, digest)


def fits(settings: Settings, value: Any, body: bytes) -> bool:
    """Whether `value` (its JSON `body`) travels as itself: it fits `claim_check_bytes`
    and is not shaped like a claim (such data is kept in S3 as data, so that only offload's
    own claims ever stand in for a value). Otherwise it goes through `check_in`."""
    return len(body) <= settings.claim_check_bytes and claim_of(value) is None


def check_in(settings: Settings, job_id: str, name: str, body: bytes) -> dict[str, Any]:
    """Store JSON `body` as `jobs/<job_id>/<name>-<digest>.json`; the claim on it."""
    digest = hashlib.sha256(body).hexdigest()
    bucket = settings.bucket_name()
    key = f"jobs/{job_id}/{name}-{digest[:16]}.json"
    with clients.unavailable_as("S3"):
        clients.s3(settings).put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json"
        )
    return Claim(f"s3://{bucket}/{key}", len(body), digest).as_json()


def resolve(settings: Settings, value: Any, *, owner: str) -> Any:
    """The value a payload's claim stands for (`value` itself when it is no claim).

    The claim must be job `owner`'s (it arrives in a message, and a message must not name
    another job's object). `ClaimUnusable` when it is not, or its object is gone or not what
    was stored; `AwsUnavailable` when S3 cannot be reached."""
    claim = claim_of(value)
    if claim is None:
        return value
    if not _owned(settings, claim, owner):
        raise ClaimUnusable(f"the claim names {claim.uri}, which is not job {owner}'s")
    return _read(settings, claim)


def result_of(settings: Settings, job: Job) -> Any:
    """A job's result, read from S3 when it is kept there (`resolve`'s rules)."""
    claim = claim_of(job.result)
    if claim is None:
        return job.result
    if not _trusted_result(settings, claim, job):
        raise ClaimUnusable(f"job {job.job_id}'s result names {claim.uri}, not its own")
    return _read(settings, claim)


def download(settings: Settings, job: Job) -> Download | None:
    """A short-lived presigned URL for a job's result kept in S3; None when it is in the
    record. Presigning is computed locally: no AWS call."""
    claim = claim_of(job.result)
    if claim is None or not _trusted_result(settings, claim, job):
        return None
    bucket, key = clients.split_s3_uri(claim.uri)
    ttl = settings.result_url_ttl_s
    url = clients.s3(settings).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl
    )
    return Download(url=url, bytes=claim.bytes, expires_at=utcnow() + timedelta(seconds=ttl))


def _owned(settings: Settings, claim: Claim, job_id: str) -> bool:
    bucket, key = clients.split_s3_uri(claim.uri)
    return bucket == settings.bucket_name() and key.startswith(f"jobs/{job_id}/")


def _trusted_result(settings: Settings, claim: Claim, job: Job) -> bool:
    # offload writes result claims itself (offload.runtime.attempt.kept_result), and a task's own
    # value shaped like one is always stored as data: still, only the job's own objects, or
    # the output its endpoint wrote, are ever read or handed out.
    return _owned(settings, claim, job.job_id) or claim.uri == job.output_location


def _read(settings: Settings, claim: Claim) -> Any:
    bucket, key = clients.split_s3_uri(claim.uri)
    body = clients.read_object(settings, bucket, key)
    if body is None:
        raise ClaimUnusable(f"{claim.uri} is gone (expired with the job's retention, or deleted)")
    if len(body) != claim.bytes or (
        claim.sha256 is not None and hashlib.sha256(body).hexdigest() != claim.sha256
    ):
        raise ClaimUnusable(f"{claim.uri} is not the {claim.bytes} bytes that were stored")
    try:
        return json.loads(body)
    except ValueError:
        raise ClaimUnusable(f"{claim.uri} is not JSON") from None
