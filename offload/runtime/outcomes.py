"""How a delivery of a job ended, as the process that ran it acts on it: ack, send again
later, dead-letter."""

from __future__ import annotations

from dataclasses import dataclass

from offload.core.model import JobError, JobStatus
from offload.runtime.claiming import Claim, Verdict


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `status` is None when this delivery was a duplicate and did
    nothing; `retry_in_s` is set when the job is to be tried again after that delay."""

    status: JobStatus | None
    retry_in_s: float | None = None
    # The job is another worker's for now (or its retry is not due): deliver it again later.
    busy: bool = False
    # The attempt that ran (a takeover runs a later one than its message names).
    attempt: int = 0
    # Why it failed, for FAILURE and RETRY.
    error: JobError | None = None
    # The retry is not due for this long: deliver it again then (a delay past SQS's 15 min).
    wait_s: float | None = None
    # An inline job handed to the spill lane's workers instead of running here.
    spilled: bool = False
    # The attempt parked until this job ends; `wait_s` says when it looks again regardless.
    waits_for: str | None = None


def not_run(claimed: Claim) -> Outcome:
    """The outcome of a delivery that did not run the task."""
    if claimed.verdict is Verdict.LOST:
        error = claimed.job.error if claimed.job else None
        return Outcome(JobStatus.FAILURE, attempt=claimed.attempt, error=error)
    if claimed.verdict is Verdict.WAIT:
        return Outcome(None, attempt=claimed.attempt, wait_s=claimed.wait_s)
    return Outcome(None, busy=claimed.verdict is Verdict.BUSY)
