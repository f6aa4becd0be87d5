"""How a delivery of a job ended, as the process that ran it acts on it: ack, send again
later, dead-letter. One type per way it can end (`Outcome` is their union): code that acts
on an outcome matches on its type; every one also answers the few plain questions (`status`,
`attempt`, `error`, `retry_in_s`, `wait_s`, `waits_for`, `busy`) with its own values or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from offload.core.model import JobError, JobStatus
from offload.runtime.claiming import Claim, Verdict


class _Answers:
    """What an outcome says when asked something that is not its own (none, or no).

    Not a dataclass: its defaults are class attributes. A variant declares each field of its
    own with `field()`, or dataclasses would take the default from here and the field would
    not be required."""

    status: JobStatus | None = None
    # The attempt that ran (a takeover runs a later one than its message names).
    attempt: int = 0
    error: JobError | None = None
    retry_in_s: float | None = None
    wait_s: float | None = None
    waits_for: str | None = None
    busy: bool = False


@dataclass(frozen=True)
class Succeeded(_Answers):
    """SUCCESS was recorded."""

    attempt: int = field()
    status = JobStatus.SUCCESS


@dataclass(frozen=True)
class Retrying(_Answers):
    """The attempt failed and RETRY was recorded: the next attempt is due in `retry_in_s`."""

    attempt: int = field()
    error: JobError = field()
    retry_in_s: float = field()
    status = JobStatus.RETRY


@dataclass(frozen=True)
class Failed(_Answers):
    """FAILURE was recorded (by this attempt, or for a lost worker's)."""

    attempt: int = field()
    error: JobError | None = field()
    status = JobStatus.FAILURE


@dataclass(frozen=True)
class Revoked(_Answers):
    """The attempt obeyed its cancellation: REVOKED was recorded."""

    attempt: int = field()
    status = JobStatus.REVOKED


@dataclass(frozen=True)
class NotDue(_Answers):
    """The retry (or a parked attempt's resume) is not due: deliver it again in `wait_s`
    (a backoff past SQS's 15 minutes goes in steps)."""

    attempt: int = field()
    wait_s: float = field()


@dataclass(frozen=True)
class Parked(_Answers):
    """The attempt waits for job `waits_for` without its worker; it is looked at again in
    `wait_s` at the latest (offload.runtime.waiting)."""

    attempt: int = field()
    waits_for: str = field()
    wait_s: float = field()


@dataclass(frozen=True)
class Busy(_Answers):
    """The job is another worker's for now, or the store could not be reached: keep the
    message and deliver it again later."""

    busy: bool = True


@dataclass(frozen=True)
class Dropped(_Answers):
    """Nothing to do: a duplicate or stale delivery, or an end another writer refused."""


@dataclass(frozen=True)
class Spilled(_Answers):
    """An inline job handed to the spill lane's workers as `attempt` (`sent`: False when SQS
    kept refusing it, and the job waits, alarmed, for someone to run it)."""

    attempt: int = field()
    sent: bool = True


Outcome = Succeeded | Retrying | Failed | Revoked | NotDue | Parked | Busy | Dropped | Spilled


def not_run(claimed: Claim) -> Outcome:
    """The outcome of a delivery that did not run the task."""
    if claimed.verdict is Verdict.LOST:
        return Failed(claimed.attempt, claimed.job.error if claimed.job else None)
    if claimed.verdict is Verdict.WAIT:
        return NotDue(claimed.attempt, claimed.wait_s)
    return Busy() if claimed.verdict is Verdict.BUSY else Dropped()
