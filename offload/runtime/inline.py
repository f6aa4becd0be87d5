"""The inline lane: tasks run in the API process after the response, off the event loop.

A job that this process cannot take (too many waiting) or cannot finish in time (a Lambda
invocation about to end) is not dropped: it is spilled to the cpu lane, whose workers run
inline tasks too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from typing import Any

from offload.aws.queues import SPILL_LANE, QueuePublisher
from offload.aws.store import JobStore
from offload.core.catalog import TaskSpec
from offload.core.context import NoSubmitter, Submitter
from offload.core.model import JobStatus
from offload.errors import AwsUnavailable, TaskTimeout
from offload.observability import metrics
from offload.observability.logs import log_context
from offload.runtime.attempt import Attempt
from offload.runtime.claiming import Verdict
from offload.runtime.outcomes import Dropped, Outcome, Retrying, Spilled, not_run

log = logging.getLogger(__name__)

# Nothing redelivers an inline job, so its lease is never renewed: it outlasts the limit.
INLINE_LEASE_GRACE_S = 30.0
# A spill that SQS refuses is tried again after these pauses (boto3 has retried already).
SPILL_RETRY_PAUSES_S = (0.2, 0.5, 0.0)


class InlineRunner:
    """Runs inline jobs on threads, at most `concurrency` at once, with time limits and retries.

    Use it from one event loop only (its counters and semaphore are that loop's).

    :param store: where each attempt is recorded.
    :param publisher: sends spilled jobs to the cpu lane.
    :param concurrency: how many inline tasks run at once in this process.
    :param retry_max_delay_s: inline retries wait at most this long (the process may not
        live long after the response).
    :param queue_size: how many more jobs may wait for a slot; beyond that they spill.
    :param submitter: submits the jobs its jobs hand work to (none by default).
    """

    def __init__(
        self,
        store: JobStore,
        publisher: QueuePublisher,
        concurrency: int,
        retry_max_delay_s: float,
        queue_size: int,
        submitter: Submitter | None = None,
    ) -> None:
        self.store = store
        self.submitter = submitter or NoSubmitter()
        self.publisher = publisher
        self.retry_max_delay_s = retry_max_delay_s
        self.capacity = concurrency + queue_size
        self._slots = asyncio.Semaphore(concurrency)
        self._admitted = 0  # jobs running or waiting for a slot
        self.owner = f"inline/{socket.gethostname()}/{os.getpid()}"

    async def run(
        self,
        spec: TaskSpec,
        job_id: str,
        payload: Any,
        deadline: float | None = None,
        request_id: str | None = None,
    ) -> Outcome:
        """Run every attempt of a job until it ends, or spill it; never raises.

        :param deadline: `time.monotonic()` by which every attempt run here must be over (on
            Lambda, the invocation's end less a margin); attempts that would not fit spill.
        :param request_id: the submitting request's id, for the log lines.
        """
        with log_context(job_id=job_id, request_id=request_id):
            return await self._admit(spec, job_id, payload, deadline)

    async def _admit(
        self, spec: TaskSpec, job_id: str, payload: Any, deadline: float | None
    ) -> Outcome:
        try:
            if self._admitted >= self.capacity:
                reason = f"the inline lane is full ({self.capacity} jobs)"
                if await self._spill(spec, job_id, payload, 1, 0.0, reason):
                    return Spilled(1)
                # SQS refused it too: wait for a slot here rather than lose it.
            self._admitted += 1
            try:
                return await self._run(spec, job_id, payload, deadline)
            finally:
                self._admitted -= 1
        except Exception:
            # A bug or an outage in our own code, not the task's: hand the job to the cpu
            # lane in the state it is in, rather than leave it PENDING with nobody to run it.
            log.exception("inline job %s could not be run here", job_id)
            return await self._rescue(spec, job_id, payload)

    async def _run(
        self, spec: TaskSpec, job_id: str, payload: Any, deadline: float | None
    ) -> Outcome:
        attempt, delay = 1, 0.0
        while True:
            if _too_late(deadline, delay + spec.timeout_s):
                reason = f"attempt {attempt} would end after the invocation"
                spilled = await self._spill(spec, job_id, payload, attempt, delay, reason)
                return Spilled(attempt, spilled)
            await asyncio.sleep(delay)
            outcome = await self._attempt(
                Attempt(
                    self.store,
                    spec,
                    job_id,
                    attempt,
                    payload,
                    owner=self.owner,
                    lease_s=spec.timeout_s + INLINE_LEASE_GRACE_S,
                    submitter=self.submitter,
                ),
                deadline,
            )
            if not isinstance(outcome, Retrying):
                return outcome
            attempt, delay = outcome.attempt + 1, outcome.retry_in_s

    async def _attempt(self, attempt: Attempt, deadline: float | None) -> Outcome:
        if deadline is None:
            await self._slots.acquire()
        else:
            # Slots are held by threads that may never end (a hung task): wait only as long
            # as the attempt could still end in time.
            wait_s = deadline - time.monotonic() - attempt.spec.timeout_s
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=max(0.0, wait_s))
            except TimeoutError:
                return await self._spill_attempt(attempt, "no inline slot came free in time")
        slot_passed_on = False
        try:
            if _too_late(deadline, attempt.spec.timeout_s):
                # The wait for a slot used up the time it had.
                return await self._spill_attempt(attempt, "it got a slot too late to end in time")
            claimed = await asyncio.to_thread(attempt.begin)
            if claimed.verdict is not Verdict.RUN:
                return not_run(claimed)
            done = self._start_thread(attempt)
            slot_passed_on = True  # the thread frees the slot when it ends, even past its limit
            # The limit counts from the thread's start, not from the wait for a slot.
            finished, _ = await asyncio.wait({done}, timeout=attempt.spec.timeout_s)
            if not finished:
                # A thread cannot be stopped; its late result is refused by the store.
                error: BaseException = TaskTimeout(
                    f"{attempt.spec.name} ran past its {attempt.spec.timeout_s:g} s limit"
                )
            elif done.exception() is not None:
                error = done.exception()  # type: ignore[assignment]
                with attempt.logged():
                    log.info(
                        "inline job %s attempt %d raised",
                        attempt.job_id,
                        attempt.attempt,
                        exc_info=error,
                    )
            else:
                return await asyncio.to_thread(attempt.succeeded, done.result())
        finally:
            if not slot_passed_on:
                self._slots.release()
        return await asyncio.to_thread(attempt.failed, error, max_delay_s=self.retry_max_delay_s)

    async def _spill_attempt(self, attempt: Attempt, why: str) -> Outcome:
        spilled = await self._spill(
            attempt.spec, attempt.job_id, attempt.payload, attempt.attempt, 0.0, why
        )
        return Spilled(attempt.attempt, spilled)

    async def _spill(
        self, spec: TaskSpec, job_id: str, payload: Any, attempt: int, delay_s: float, why: str
    ) -> bool:
        """Send attempt `attempt` to the spill lane's workers; False if SQS kept refusing."""
        for pause_s in SPILL_RETRY_PAUSES_S:
            try:
                await asyncio.to_thread(
                    self.publisher.send, spec, job_id, payload, attempt=attempt, delay_s=delay_s
                )
            except AwsUnavailable as exc:
                log.warning(
                    "inline job %s: spill to the %s lane failed: %s", job_id, SPILL_LANE, exc
                )
                await asyncio.sleep(pause_s)
                continue
            log.warning("inline job %s spilled to the %s lane: %s", job_id, SPILL_LANE, why)
            metrics.count("InlineSpilled", spec.name, spec.lane)
            return True
        # The job keeps its PENDING/RETRY record and nothing here can run it: alarm on this.
        log.error("inline job %s could not be spilled to the %s lane; it waits", job_id, SPILL_LANE)
        metrics.count("InlineSpillFailed", spec.name, spec.lane)
        return False

    async def _rescue(self, spec: TaskSpec, job_id: str, payload: Any) -> Outcome:
        """Spill a job whose run failed in offload's own code, as its record says it stands."""
        try:
            job = await asyncio.to_thread(self.store.get, job_id)
        except Exception:
            log.exception("inline job %s: its record cannot be read either", job_id)
            metrics.count("InlineSpillFailed", spec.name, spec.lane)
            return Dropped()
        if job.status not in (JobStatus.PENDING, JobStatus.RETRY):
            return Dropped()  # it ended, or an attempt holds it: nothing to hand over
        spilled = await self._spill(
            spec, job_id, payload, job.attempts + 1, 0.0, "its inline run failed in offload"
        )
        return Spilled(job.attempts + 1, spilled)

    def _start_thread(self, attempt: Attempt) -> asyncio.Future[Any]:
        """Run `attempt.invoke` on a thread of its own; the future settles when it returns."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def settle(value: Any, exc: BaseException | None) -> None:
            if not done.done():
                if exc is None:
                    done.set_result(value)
                else:
                    done.set_exception(exc)
            self._slots.release()

        def work() -> None:
            value, failure = None, None
            try:
                value = attempt.invoke()
            except BaseException as exc:  # handed to the event loop, which records it
                failure = exc
            try:
                loop.call_soon_threadsafe(settle, value, failure)
            except RuntimeError:
                pass  # the loop is gone (process shutting down): nobody waits any more

        threading.Thread(target=work, name=f"offload-inline-{attempt.job_id}", daemon=True).start()
        return done


def _too_late(deadline: float | None, needs_s: float) -> bool:
    return deadline is not None and time.monotonic() + needs_s > deadline
