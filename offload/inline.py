"""The inline lane: tasks run in the API process after the response, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
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
    """Runs inline jobs on a bounded thread pool, with the task's time limit and retries.

    :param store: where each attempt is recorded.
    :param concurrency: how many inline tasks run at once in this process.
    :param retry_max_delay_s: inline retries wait at most this long (the process may not
        live long after the response).
    """

    def __init__(self, store: JobStore, concurrency: int, retry_max_delay_s: float) -> None:
        self.store = store
        self.retry_max_delay_s = retry_max_delay_s
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="offload-inline")
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
            attempt += 1

    async def _attempt(self, attempt: Attempt) -> Outcome:
        loop = asyncio.get_running_loop()
        async with self._slots:
            claimed = await asyncio.to_thread(attempt.begin)
            if claimed.verdict is not Verdict.RUN:
                return not_run(claimed)
            try:
                # The limit counts from the start of the attempt, not its wait for a slot.
                result = await asyncio.wait_for(
                    loop.run_in_executor(self._executor, attempt.invoke), attempt.spec.timeout_s
                )
            except TimeoutError:
                # The thread cannot be stopped; its late result is refused by the store.
                error: Exception = TaskTimeout(
                    f"{attempt.spec.name} ran past its {attempt.spec.timeout_s:g} s limit"
                )
            except Exception as exc:
                log.info(
                    "inline job %s attempt %d raised",
                    attempt.job_id,
                    attempt.attempt,
                    exc_info=True,
                )
                error = exc
            else:
                return await asyncio.to_thread(attempt.succeeded, result)
        return await asyncio.to_thread(attempt.failed, error, max_delay_s=self.retry_max_delay_s)

    def shutdown(self) -> None:
        """Stop taking work; running tasks finish."""
        self._executor.shutdown(wait=False, cancel_futures=False)
