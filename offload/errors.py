"""The engine's exceptions. Each carries what a client or operator needs to act on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    from offload.core.model import Job


class OffloadError(Exception):
    """Base of every error offload raises on purpose."""


class TaskDeclarationError(OffloadError):
    """A `@task` declaration is invalid; raised at import so it never reaches production."""


class UnknownTask(OffloadError):
    """No task of that name is in the catalog."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(known) or 'none'}")


class InvalidPayload(OffloadError):
    """A payload does not match its task's model; `errors` name each field and reason."""

    def __init__(self, task: str, errors: list[dict[str, str]], lane: str | None = None) -> None:
        self.task = task
        self.errors = errors
        reasons = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        # A worker names its lane: the payload validated at submit, so the task changed.
        where = f" on the {lane} lane" if lane else ""
        super().__init__(f"invalid payload for {task}{where}: {reasons}")

    @classmethod
    def from_validation(
        cls, task: str, exc: ValidationError, prefix: str = "payload", lane: str | None = None
    ) -> InvalidPayload:
        """Translate pydantic's errors into field paths like `payload.rows.2`."""
        errors = []
        for err in exc.errors(include_url=False):
            path = ".".join(str(part) for part in (prefix, *err["loc"]))
            errors.append({"field": path, "message": err["msg"]})
        return cls(task, errors, lane)


class PayloadTooLarge(OffloadError):
    """A payload is larger than `Settings.max_payload_bytes`."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"payload is {size} bytes as JSON; the limit is {limit} bytes")


class TooManyJobsInFlight(OffloadError):
    """The caller has as many jobs in flight as it may (`Settings.max_jobs_in_flight`)."""

    def __init__(self, caller: str, limit: int, retry_after_s: int) -> None:
        self.caller = caller
        self.limit = limit
        self.retry_after_s = retry_after_s
        super().__init__(
            f"{limit} jobs of yours are in flight, as many as you may have at once; "
            f"submit again once some have ended (retry after {retry_after_s} s)"
        )


class Unauthenticated(OffloadError):
    """The request names no caller, and this API requires one."""


class Forbidden(OffloadError):
    """The caller is known but may not do this."""


class JobNotFound(OffloadError):
    """No job with that id (or not one the caller may see)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found")


class JobStateConflict(OffloadError):
    """A conditional write lost: the job is not in the state the writer expected."""

    def __init__(self, job_id: str, wanted: str, current: Job | None = None) -> None:
        self.job_id = job_id
        self.wanted = wanted
        self.current = current  # the job as the losing write found it, when it exists
        self.current_status = current.status.value if current else None
        self.current_attempts = current.attempts if current else None
        state = (
            f"it is {self.current_status} after {self.current_attempts} attempt(s)"
            if current is not None
            else "it does not exist"
        )
        super().__init__(f"job {job_id} cannot {wanted}: {state}")


class JobAlreadyExists(OffloadError):
    """A job with that id exists already (an id collision or a repeated idempotency key)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} exists already")


class IdempotencyMismatch(OffloadError):
    """An idempotency key was reused with a different task or payload."""

    def __init__(self, key: str, job_id: str) -> None:
        self.key = key
        self.job_id = job_id
        super().__init__(
            f"idempotency key {key!r} was used for job {job_id} with a different task or "
            "payload; use a new key for a new request"
        )


class AwsUnavailable(OffloadError):
    """An AWS service (or the local stack) could not be reached or refused to serve."""

    def __init__(self, service: str, detail: str) -> None:
        self.service = service
        super().__init__(f"{service} is unavailable: {detail}")


class PermanentFailure(OffloadError):
    """Raised by a task for an error no retry can fix: the job fails at once."""


class WaitingForJob(PermanentFailure):
    """Raised by a queue-lane task (`JobContext.wait_for`) to give its worker back while a
    job it submitted runs elsewhere; the job resumes, as the same attempt, once that job ends.

    A permanent failure where a lane cannot park a job (inline, a batch): nothing there
    would resume it."""

    def __init__(self, job_id: str, child_id: str, recheck_s: float) -> None:
        self.child_id = child_id
        self.recheck_s = recheck_s
        super().__init__(
            f"job {job_id} waits for job {child_id}; only unbatched cpu and gpu tasks may wait"
        )


class JobRevoked(OffloadError):
    """Raised inside a running task at its next progress report once cancellation is asked."""


class TaskTimeout(OffloadError):
    """An inline task ran past its time limit."""


class TimeLimitExceeded(OffloadError):
    """A worker's hard time limit ended a task that ignored its soft limit."""
