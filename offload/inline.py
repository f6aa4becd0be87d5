"""The inline lane: tasks run in the API process after the response, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from typing import Any

from offload.catalog import TaskSpec
from offload.errors import TaskTimeout
from offload.execution import Attempt, Outcome, not_run
from offload.leases import Verdict
from offload.store import JobStore

log = logging.getLogger(__name__)

# Nothing redelivers an inline job, so its lease is never renewed: it outlasts the limit.
INLINE_LEASE_GRACE_S = 30.0


class InlineRunner:
    """Runs inline jobs on threads, at most `concurrency` at once, with time limits and retries.

    :param store: where each attempt is recorded.
    :param concurrency: how many inline tasks run at once in this process.
    :param retry_max_delay_s: inline retries wait at most this long (the process may not
        live long after the response).
    """

    def __init__(self, store: JobStore, concurrency: int, retry_max_delay_s: float) -> None:
        self.store = store
        self.retry_max_delay_s = retry_max_delay_s
        self._slots = asyncio.Semaphore(concurrency)
        self.owner = f"inline/{socket.gethostname()}/{os.getpid()}"

    async def run(self, spec: TaskSpec, job_id: str, payload: Any) -> Outcome:
        """Run every attempt of a job until it ends; never raises."""
        try:
            return await self._run(spec, job_id, payload)
        except Exception:
            # A background task that raises is only logged by Starlette; say which job it was.
            log.exception("inline job %s could not be run", job_id)
            return Outcome(None)

    async def _run(self, spec: TaskSpec, job_id: str, payload: Any) -> Outcome:
        attempt = 1
        while True:
            outcome = await self._attempt(
                Attempt(
                    self.store,
                    spec,
                    job_id,
                    attempt,
                    payload,
                    owner=self.owner,
                    lease_s=spec.timeout_s + INLINE_LEASE_GRACE_S,
                )
            )
            if outcome.retry_in_s is None:
                return outcome
            await asyncio.sleep(outcome.retry_in_s)
            attempt = outcome.attempt + 1

    async def _attempt(self, attempt: Attempt) -> Outcome:
        await self._slots.acquire()
        slot_passed_on = False
        try:
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
