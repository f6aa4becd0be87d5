"""Every change a job's record can undergo, by name, and the statuses each may start from.

DESIGN.md's allowed moves between statuses (`offload.core.model.ALLOWED`) are the source of
truth: a transition that changes the status may start only from statuses the table allows
to reach its target (checked below, at import). Transitions that keep the status (a lease
renewed, a job parked or woken, progress) say which status they need. The store's
conditional writes are built from this table (`offload.aws.transitions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from offload.core.model import ALLOWED, JobStatus, sources_of

PENDING, STARTED, RETRY = JobStatus.PENDING, JobStatus.STARTED, JobStatus.RETRY
FAILURE = JobStatus.FAILURE


class Transition(StrEnum):
    """The name of one kind of change of a job."""

    CREATE = "create"  # a new job, PENDING
    DISCARD = "discard"  # a job never dispatched is deleted (its submit failed)
    CLAIM = "claim"  # a delivery starts the next attempt and takes its lease
    TAKE_OVER = "take over"  # ... from a worker whose lease lapsed
    RENEW = "renew"  # a heartbeat extends the running attempt's lease
    RELEASE = "release"  # a stopping worker lets its lease lapse now
    PARK = "park"  # the attempt waits for a child job without its worker
    RESUME = "resume"  # a delivery takes a parked attempt back, as the same attempt
    WAKE = "wake"  # the child ended: the parked attempt is due now
    REPORT_PROGRESS = "report progress"
    FLAG_CANCEL = "flag cancel"  # cancellation asked while it runs
    REVOKE = "revoke"  # cancelled before it started
    REVOKE_RUNNING = "revoke running"  # a running attempt obeyed its cancellation
    SUCCEED = "succeed"
    RETRY = "retry"  # the attempt failed; another is due later
    FAIL = "fail"  # the job failed for good
    REOPEN = "reopen"  # an operator replays a failed job (its only way out of FAILURE)
    RECORD_INVOKED = "record invoked"  # an attempt was sent to a SageMaker endpoint


@dataclass(frozen=True)
class Move:
    """The statuses a transition starts from, and the status it leaves (None: the same)."""

    sources: frozenset[JobStatus]
    target: JobStatus | None


def _to(target: JobStatus, *only: JobStatus) -> Move:
    """A move to `target` from every status the table allows, or from `only` those."""
    allowed = sources_of(target)
    return Move(frozenset(only) if only else allowed, target)


def _keeps(*statuses: JobStatus) -> Move:
    return Move(frozenset(statuses), None)


MOVES: dict[Transition, Move] = {
    Transition.CREATE: Move(frozenset(), PENDING),
    Transition.DISCARD: _keeps(PENDING),
    Transition.CLAIM: _to(STARTED, PENDING, RETRY),
    # A takeover advances the attempt of a STARTED job: not a change of status.
    Transition.TAKE_OVER: _keeps(STARTED),
    Transition.RENEW: _keeps(STARTED),
    Transition.RELEASE: _keeps(STARTED),
    Transition.PARK: _keeps(STARTED),
    Transition.RESUME: _keeps(STARTED),
    Transition.WAKE: _keeps(STARTED),
    Transition.REPORT_PROGRESS: _keeps(STARTED),
    Transition.FLAG_CANCEL: _keeps(STARTED),
    Transition.REVOKE: _to(JobStatus.REVOKED, PENDING, RETRY),
    Transition.REVOKE_RUNNING: _to(JobStatus.REVOKED, STARTED),
    Transition.SUCCEED: _to(JobStatus.SUCCESS),
    Transition.RETRY: _to(RETRY),
    Transition.FAIL: _to(FAILURE),
    # Not one of DESIGN.md's moves: an operator's act, the only write that leaves FAILURE.
    Transition.REOPEN: Move(frozenset({FAILURE}), PENDING),
    Transition.RECORD_INVOKED: _to(STARTED, PENDING, RETRY),
}

# The transitions that end a job: out of the in-flight indexes, and due to expire.
ENDING = frozenset(t for t, move in MOVES.items() if move.target and move.target.terminal)


def sources(
    transition: Transition, only: frozenset[JobStatus] | None = None
) -> frozenset[JobStatus]:
    """The statuses `transition` may start from: the table's, or `only` if they are a subset."""
    allowed = MOVES[transition].sources
    if only is None:
        return allowed
    if not only <= allowed:
        raise ValueError(f"{transition.value} cannot start from {sorted(only - allowed)}")
    return only


def _check() -> None:
    for transition, move in MOVES.items():
        if move.target is None or transition is Transition.REOPEN:
            continue
        for source in move.sources:
            if move.target not in ALLOWED[source]:
                raise AssertionError(f"{transition}: {source} -> {move.target} is not allowed")


_check()
