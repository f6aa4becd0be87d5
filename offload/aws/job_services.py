"""What a running task's context reaches (`offload.core.context.JobServices`), on AWS: its
job's record in the store and its objects in the results bucket."""

from __future__ import annotations

from typing import Any

from offload.aws import claims, clients, transitions
from offload.aws.store import JobStore
from offload.core.model import Job, Progress


class AwsJobServices:
    """`JobServices` over a job store and its settings' results bucket."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.settings = store.settings

    def report_progress(self, job_id: str, attempt: int, progress: Progress) -> None:
        self.store.apply(transitions.report_progress(job_id, attempt, progress))

    def get_object(self, key: str) -> bytes | None:
        return clients.read_object(self.settings, self.settings.bucket_name(), key)

    def put_object(self, key: str, body: bytes, content_type: str) -> str:
        bucket = self.settings.bucket_name()
        with clients.unavailable_as("S3"):
            clients.s3(self.settings).put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type
            )
        return f"s3://{bucket}/{key}"

    def result_of(self, job: Job) -> Any:
        return claims.result_of(self.settings, job)
