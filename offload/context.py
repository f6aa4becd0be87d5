"""What a running task can see and do: its ids, progress reports, and its own S3 prefix."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from offload import aws, claims
from offload.errors import JobRevoked, JobStateConflict, WaitingForJob
from offload.job import Job, Progress
from offload.settings import Settings
from offload.store import JobStore

if TYPE_CHECKING:
    from offload.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Handed to every task function as its second argument."""

    job_id: str
    task: str
    attempt: int
    settings: Settings
    store: JobStore = field(repr=False)
    # Attempts the job made in earlier runs, before an operator replayed it.
    previous_attempts: int = 0
    # Whose job it is (known once claimed): what the job makes for its caller, it keeps apart.
    caller: str = "local"
    # The tasks `submit_job` may submit: the process catalog unless a test brings its own.
    catalog: Catalog | None = field(default=None, repr=False)

    def progress(self, percent: float, message: str = "") -> None:
        """Report how far the task has come; clients see it at `GET /jobs/{id}`.

        Raises `JobRevoked` when the job's cancellation was asked: let it propagate (clean
        up first if needed) and the job ends as REVOKED.
        """
        report = Progress(percent=max(0.0, min(100.0, float(percent))), message=message[:500])
        try:
            self.store.report_progress(self.job_id, self.attempt, report)
        except JobStateConflict as exc:
            job = exc.current
            if job is not None and job.cancel_requested and job.attempts == self.attempt:
                raise JobRevoked(f"job {self.job_id} was cancelled while it ran") from None
            # The job moved on without us (timed out or taken over): this attempt's result
            # will be refused too, but the report is not worth failing the task for.
            log.warning("progress of job %s not recorded: %s", self.job_id, exc)

    @property
    def prefix(self) -> str:
        """The S3 key prefix that belongs to this job."""
        return f"jobs/{self.job_id}/"

    def get_artifact(self, name: str) -> bytes | None:
        """A file an earlier attempt stored under the job's prefix; None if there is none."""
        return aws.read_object(self.settings, self.settings.bucket_name(), self.prefix + name)

    def put_artifact(self, name: str, body: bytes, content_type: str) -> str:
        """Store `body` under the job's prefix in the results bucket; returns its `s3://` URI."""
        bucket = self.settings.bucket_name()
        key = self.prefix + name
        with aws.unavailable_as("S3"):
            aws.s3(self.settings).put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type
            )
        return f"s3://{bucket}/{key}"

    def submit_job(self, step: str, task: str, payload: Any) -> Job:
        """Submit a job of `task` that does step `step` of this attempt (once: asked again
        by the same attempt, e.g. after a wait, it is the same job), owned by this job's
        caller. Wait for it with `wait_for`."""
        from offload.catalog import CATALOG
        from offload.waiting import submit_job

        return submit_job(self, step, task, payload, self.catalog or CATALOG)

    def result_of(self, job: Job) -> Any:
        """The result of an ended job from `submit_job`, read from S3 when it was too large
        for the job record (offload.claims)."""
        return claims.result_of(self.settings, job)

    def wait_for(self, job: Job) -> NoReturn:
        """Give the worker back until `job` (from `submit_job`) ends; the task then runs
        again from its start, as the same attempt. Keep finished steps (`put_artifact`)
        so that the second run skips them. Only unbatched cpu and gpu tasks can wait."""
        raise WaitingForJob(self.job_id, job.job_id, self.settings.wait_recheck_s)
