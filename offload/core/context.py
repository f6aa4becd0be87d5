"""What a running task can see and do: its ids, progress reports, its own S3 prefix, and
jobs of its own. The context reaches AWS only through what it is handed: `JobServices`
(made by the runtime from the store: offload.aws.job_services) and a `Submitter` (the
caller's side: offload.submit.children), so that this module, like all of core, does no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from offload.core.model import Job, Progress
from offload.errors import JobRevoked, JobStateConflict, WaitingForJob
from offload.settings import Settings

log = logging.getLogger(__name__)


class JobServices(Protocol):
    """The records and objects a running task's context reaches."""

    def report_progress(self, job_id: str, attempt: int, progress: Progress) -> None:
        """Record progress of the running attempt; `JobStateConflict` when it moved on."""

    def get_object(self, key: str) -> bytes | None:
        """An object of the results bucket; None if there is none."""

    def put_object(self, key: str, body: bytes, content_type: str) -> str:
        """Store an object in the results bucket; its `s3://` URI."""

    def result_of(self, job: Job) -> Any:
        """The result of an ended job, read from S3 when the record holds a claim on it."""


class Submitter(Protocol):
    """Submits the jobs a running task hands work to."""

    def submit_child(self, parent: JobContext, step: str, task: str, payload: Any) -> Job:
        """Submit a job of `task` for step `step` of `parent`'s attempt, once per step."""


class NoSubmitter:
    """Where no job may submit jobs of its own (a SageMaker request, a test's bare context)."""

    def submit_child(self, parent: JobContext, step: str, task: str, payload: Any) -> Job:
        raise RuntimeError(f"task {parent.task} cannot submit jobs on this lane")


@dataclass
class JobContext:
    """Handed to every task function as its second argument."""

    job_id: str
    task: str
    attempt: int
    settings: Settings
    services: JobServices = field(repr=False)
    # Attempts the job made in earlier runs, before an operator replayed it.
    previous_attempts: int = 0
    # Whose job it is (known once claimed): what the job makes for its caller, it keeps apart.
    caller: str = "local"
    submitter: Submitter = field(default_factory=NoSubmitter, repr=False)

    def progress(self, percent: float, message: str = "") -> None:
        """Report how far the task has come; clients see it at `GET /jobs/{id}`.

        Raises `JobRevoked` when the job's cancellation was asked: let it propagate (clean
        up first if needed) and the job ends as REVOKED.
        """
        report = Progress(percent=max(0.0, min(100.0, float(percent))), message=message[:500])
        try:
            self.services.report_progress(self.job_id, self.attempt, report)
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
        return self.services.get_object(self.prefix + name)

    def put_artifact(self, name: str, body: bytes, content_type: str) -> str:
        """Store `body` under the job's prefix in the results bucket; returns its `s3://` URI."""
        return self.services.put_object(self.prefix + name, body, content_type)

    def submit_job(self, step: str, task: str, payload: Any) -> Job:
        """Submit a job of `task` that does step `step` of this attempt (once: asked again
        by the same attempt, e.g. after a wait, it is the same job), owned by this job's
        caller. Wait for it with `wait_for`."""
        return self.submitter.submit_child(self, step, task, payload)

    def result_of(self, job: Job) -> Any:
        """The result of an ended job from `submit_job`, read from S3 when it was too large
        for the job record (offload.aws.claims)."""
        return self.services.result_of(job)

    def wait_for(self, job: Job) -> NoReturn:
        """Give the worker back until `job` (from `submit_job`) ends; the task then runs
        again from its start, as the same attempt. Keep finished steps (`put_artifact`)
        so that the second run skips them. Only unbatched cpu and gpu tasks can wait."""
        raise WaitingForJob(self.job_id, job.job_id, self.settings.wait_recheck_s)
