"""A model-based test of the job state machine (DESIGN.md, "Contracts").

Hypothesis drives random interleavings of every actor's step against one job in moto's
table: deliveries (duplicates and stale attempt numbers among them), the holder finishing,
renewing, parking or obeying a cancel, its lease lapsing, operators cancelling, waking and
replaying. After each step the job as stored is compared with the one before: every change
must be a move DESIGN.md allows, a takeover of an expired lease or a replay. At most one
worker runs an attempt, and at the end redeliveries alone (SQS brings a message back until
it is acked) must bring the job to an end.

Time passes by rewriting a lease or a retry's due time into the past, never by sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from offload.aws import items, transitions
from offload.aws.cancel import request_cancel
from offload.aws.store import JobStore
from offload.core.holders import Worker
from offload.core.model import ALLOWED, TERMINAL, Job, JobError, JobStatus, utcnow
from offload.errors import JobStateConflict
from offload.runtime.claiming import Verdict, claim
from offload.settings import Settings
from tests.integration import jobs

MAX_ATTEMPTS = 3
LEASE_S = 60.0
WORKERS = ("w1", "w2", "w3", "w4")
CHILD = "child-of-the-job"
BOOM = JobError(type="Boom", message="the task raised")


@dataclass(frozen=True)
class Run:
    """What a worker believes it runs: an attempt of one replay generation."""

    generation: int
    attempt: int


def _lapse(store: JobStore, job_id: str, field: str) -> None:
    """Let time pass for `field` (a lease or a retry's due time): it lies in the past now."""
    jobs.doctor(
        store,
        job_id,
        f"SET {field} = :then",
        {
            ":started": {"S": JobStatus.STARTED.value},
            ":retry": {"S": JobStatus.RETRY.value},
            ":then": items.timestamp(utcnow() - timedelta(seconds=5)),
        },
        condition=f"attribute_exists({field}) AND #status IN (:started, :retry)",
        names={"#status": "status"},
    )


def _lease_live(job: Job, now: datetime) -> bool:
    return job.lease_expires_at is not None and job.lease_expires_at > now


class JobLife(RuleBasedStateMachine):
    """One job, four workers, an operator; the model: who runs what, and what was granted."""

    store: JobStore  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.job_id = ""
        self.seen: Job | None = None
        self.runs: dict[str, Run] = {}  # worker -> the attempt it believes it runs
        self.granted: dict[Run, int] = {}  # how often a delivery was told RUN for each
        self.parked: dict[Run, int] = {}  # how often each was parked (then resumed as is)
        self.stale_generation: set[str] = set()  # workers whose run predates a replay

    # -- the model's view ------------------------------------------------------------------

    @property
    def generation(self) -> int:
        assert self.seen is not None
        return len(self.seen.history)

    def job(self) -> Job:
        return self.store.get(self.job_id)

    def _idle(self) -> list[str]:
        return [w for w in WORKERS if w not in self.runs]

    def _seen_in(self, *statuses: JobStatus) -> bool:
        return self.seen is not None and self.seen.status in statuses

    def _current(self) -> list[str]:
        """Workers that may still write: their run is of this generation."""
        return [w for w in self.runs if w not in self.stale_generation]

    # -- steps -----------------------------------------------------------------------------

    @initialize()
    def submit(self) -> None:
        self.job_id = jobs.pending(self.store, max_attempts=MAX_ATTEMPTS)
        self.seen = self.job()
        self.runs, self.granted, self.parked = {}, {}, {}
        self.stale_generation = set()

    @precondition(lambda self: self._seen_in(*TERMINAL))
    @rule()
    def next_job(self) -> None:
        """The job has ended: the workers move on to a new one (more steps that matter)."""
        self.submit()

    @precondition(lambda self: bool(self._idle()))
    @rule(pick=st.integers(0, 3), attempt=st.integers(1, MAX_ATTEMPTS + 1))
    def deliver(self, pick: int, attempt: int) -> None:
        """A message of `attempt` (current, duplicate or stale) reaches an idle worker."""
        idle = self._idle()
        worker = idle[pick % len(idle)]
        claimed = claim(self.store, self.job_id, attempt, worker, LEASE_S, MAX_ATTEMPTS)
        if claimed.verdict is not Verdict.RUN:
            return
        assert claimed.job is not None and claimed.job.lease_owner == worker
        run = Run(len(claimed.job.history), claimed.attempt)
        assert claimed.job.attempts == run.attempt
        # One runner per attempt: a second grant only resumes a run its holder parked.
        self.granted[run] = self.granted.get(run, 0) + 1
        assert self.granted[run] <= 1 + self.parked.get(run, 0), f"{run} granted twice"
        self.runs[worker] = run

    @precondition(lambda self: bool(self._current()))
    @rule(
        pick=st.integers(0, 3),
        outcome=st.sampled_from(["succeed", "retry", "retry later", "fail", "obey cancel"]),
    )
    def finish(self, pick: int, outcome: str) -> None:
        """A worker of this generation writes its attempt's end, late or not."""
        current = self._current()
        worker = current[pick % len(current)]
        run = self.runs.pop(worker)
        before = self.job()
        holds = before.status is JobStatus.STARTED and before.attempts == run.attempt
        if outcome == "retry" or outcome == "retry later":
            outcome = outcome if run.attempt < MAX_ATTEMPTS else "fail"
        try:
            if outcome == "succeed":
                self.store.apply(
                    transitions.succeed(
                        self.job_id, run.attempt, {"ok": True}, holder=Worker(worker)
                    )
                )
            elif outcome.startswith("retry"):
                due = utcnow() + timedelta(seconds=60 if outcome == "retry later" else -1)
                self.store.apply(
                    transitions.retry(self.job_id, run.attempt, BOOM, due, holder=Worker(worker))
                )
            elif outcome == "fail":
                self.store.apply(
                    transitions.fail(self.job_id, run.attempt, BOOM, holder=Worker(worker))
                )
            else:
                self.store.apply(transitions.revoke_running(self.job_id, run.attempt))
        except JobStateConflict:
            assert not holds, f"{worker} still ran {run} but its end was refused"
            return
        assert holds, f"a late write of {run} by {worker} was accepted over {before.status}"
        assert before.lease_owner == worker, f"{worker} ended {run} held by {before.lease_owner}"

    @precondition(lambda self: bool(self.runs))
    @rule(pick=st.integers(0, 3))
    def heartbeat(self, pick: int) -> None:
        """A running worker renews its lease; refused once it lost it, and then it stops."""
        worker = list(self.runs)[pick % len(self.runs)]
        before = self.job()
        try:
            self.store.apply(transitions.renew(self.job_id, Worker(worker), LEASE_S))
        except JobStateConflict:
            assert before.lease_owner != worker or before.status is not JobStatus.STARTED
            del self.runs[worker]
            return
        assert before.status is JobStatus.STARTED and before.lease_owner == worker
        assert worker not in self.stale_generation, f"{worker} renewed a later generation"

    @precondition(lambda self: bool(self._current()))
    @rule(pick=st.integers(0, 3))
    def park_on_a_child(self, pick: int) -> None:
        """A running task hands its attempt to the wait for a job it submitted."""
        current = self._current()
        worker = current[pick % len(current)]
        run = self.runs.pop(worker)
        try:
            self.store.apply(
                transitions.park(self.job_id, run.attempt, Worker(worker), CHILD, LEASE_S)
            )
        except JobStateConflict:
            return  # lost its lease, or cancelled: its worker stops or revokes instead
        self.parked[run] = self.parked.get(run, 0) + 1

    @precondition(lambda self: bool(self.runs))
    @rule(pick=st.integers(0, 3), stops=st.booleans())
    def worker_dies(self, pick: int, stops: bool) -> None:
        """A worker crashes (never writes again), or stops cleanly and releases its lease."""
        worker = list(self.runs)[pick % len(self.runs)]
        del self.runs[worker]
        self.stale_generation.discard(worker)
        if stops:
            try:
                self.store.apply(transitions.release(self.job_id, Worker(worker)))
            except JobStateConflict:
                pass  # it no longer held the lease

    @precondition(lambda self: self._seen_in(JobStatus.STARTED, JobStatus.RETRY))
    @rule()
    def time_passes(self) -> None:
        """The holder stalls past its lease (or a parked job's recheck time comes), or a
        retry's delay runs out."""
        job = self.job()
        if job.status is JobStatus.STARTED and job.lease_expires_at is not None:
            _lapse(self.store, self.job_id, "lease_expires_at")
        if job.status is JobStatus.RETRY and job.next_attempt_at is not None:
            _lapse(self.store, self.job_id, "next_attempt_at")

    @rule(now=st.integers(0, 2))
    def cancel(self, now: int) -> None:
        """A caller cancels: REVOKED before start or while parked, flagged while it runs."""
        if now:
            return  # rarer than the workers' steps, which a cancel mostly cuts short
        try:
            request_cancel(self.store, self.job_id)
        except JobStateConflict as conflict:
            assert conflict.current is not None and conflict.current.status.terminal

    @precondition(lambda self: self.seen is not None and self.seen.parked_on is not None)
    @rule()
    def child_ends(self) -> None:
        """The job waited for ends and wakes its parent."""
        try:
            self.store.apply(transitions.wake(self.job_id, CHILD))
        except JobStateConflict as conflict:
            job = conflict.current
            assert job is None or job.status is not JobStatus.STARTED or job.parked_on != CHILD

    @precondition(lambda self: self._seen_in(JobStatus.FAILURE))
    @rule()
    def operator_replays(self) -> None:
        """An operator replays the dead letter: FAILURE -> PENDING, a new generation."""
        job = self.job()
        try:
            self.store.apply(transitions.reopen(job))
        except JobStateConflict:
            assert job.status is not JobStatus.FAILURE
            return
        assert job.status is JobStatus.FAILURE
        # Runs from before the replay: they may renew (and are refused); their late ends,
        # refused by the lease owner, are pinned by the test at the end of this file.
        self.stale_generation.update(self.runs)

    # -- checks ----------------------------------------------------------------------------

    @invariant()
    def every_change_is_an_allowed_move(self) -> None:
        if not self.job_id:
            return
        before, now = self.seen, self.job()
        assert before is not None
        self.seen = now
        was, got = before.status, now.status
        move = f"{was.value}/{before.attempts} -> {got.value}/{now.attempts}"
        assert 0 <= now.attempts <= MAX_ATTEMPTS, move
        if len(now.history) != len(before.history):
            assert len(now.history) == len(before.history) + 1, move
            assert (was, got, now.attempts) == (JobStatus.FAILURE, JobStatus.PENDING, 0), move
            assert now.history[-1].attempts == before.attempts, move
            return
        if was is got and now.attempts == before.attempts:
            return  # no move (a renewal, a flag, a park, a resume)
        if was is got is JobStatus.STARTED:
            # A takeover: the next attempt, and only of a lease that had lapsed.
            assert now.attempts == before.attempts + 1, move
            assert before.lease_expires_at is not None and before.lease_expires_at <= utcnow()
            return
        assert got in ALLOWED[was], f"illegal move {move}"
        expected = before.attempts + (1 if got is JobStatus.STARTED else 0)
        assert now.attempts == expected, move

    @invariant()
    def one_runner_per_attempt(self) -> None:
        if not self.job_id:
            return
        job = self.seen
        assert job is not None
        holders = [w for w, run in self.runs.items() if run == Run(self.generation, job.attempts)]
        assert len(holders) <= 1, f"{holders} all run attempt {job.attempts}"
        if holders and job.status is JobStatus.STARTED:
            assert job.lease_owner == holders[0]

    @invariant()
    def a_job_not_ended_can_be_moved(self) -> None:
        if not self.job_id:
            return
        job = self.seen
        assert job is not None
        if job.status is JobStatus.STARTED:
            # A redelivery judges it by its lease: someone holds it until a known time.
            assert job.lease_owner is not None and job.lease_expires_at is not None
        if job.status is JobStatus.RETRY:
            assert job.attempts < MAX_ATTEMPTS

    def teardown(self) -> None:
        """Redeliveries alone end the job: every worker left dies, time passes, the message
        comes back (its attempt as the engine sends it) and each run fails or retries."""
        if not self.job_id:
            return
        for _ in range(4 * MAX_ATTEMPTS + 4):
            job = self.job()
            if job.status.terminal:
                return
            if job.status is JobStatus.STARTED:
                _lapse(self.store, self.job_id, "lease_expires_at")
                attempt = job.attempts
            else:
                if job.next_attempt_at is not None:
                    _lapse(self.store, self.job_id, "next_attempt_at")
                attempt = job.attempts + 1
            claimed = claim(self.store, self.job_id, attempt, "drain", LEASE_S, MAX_ATTEMPTS)
            assert claimed.verdict in (Verdict.RUN, Verdict.SKIP, Verdict.LOST), claimed
            if claimed.verdict is Verdict.RUN:
                if claimed.attempt < MAX_ATTEMPTS:
                    self.store.apply(
                        transitions.retry(self.job_id, claimed.attempt, BOOM, utcnow())
                    )
                else:
                    self.store.apply(transitions.fail(self.job_id, claimed.attempt, BOOM))
        raise AssertionError(f"job left without a way to end: {self.job()}")


def test_random_interleavings_keep_the_contracts(settings: Settings) -> None:
    JobLife.store = JobStore(settings)
    run_state_machine_as_test(
        JobLife,
        settings=hypothesis_settings(
            max_examples=40,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_a_late_end_from_before_a_replay_is_refused(settings: Settings) -> None:
    store = JobStore(settings)
    job_id = jobs.pending(store, max_attempts=MAX_ATTEMPTS)
    assert claim(store, job_id, 1, "stalled", LEASE_S, MAX_ATTEMPTS).verdict is Verdict.RUN
    _lapse(store, job_id, "lease_expires_at")
    assert claim(store, job_id, 1, "w2", LEASE_S, MAX_ATTEMPTS).attempt == 2  # a takeover
    store.apply(transitions.fail(job_id, 2, BOOM))
    store.apply(transitions.reopen(store.get(job_id)))
    assert claim(store, job_id, 1, "w3", LEASE_S, MAX_ATTEMPTS).verdict is Verdict.RUN
    # The stalled worker of the first run's attempt 1 wakes up and reports its result.
    # Attempt numbers start again at a replay; lease holders do not (the worker's Attempt
    # ends with its own name as the lease owner).
    with pytest.raises(JobStateConflict):
        store.apply(
            transitions.succeed(job_id, 1, {"from": "before the replay"}, holder=Worker("stalled"))
        )
    assert store.get(job_id).status is JobStatus.STARTED
