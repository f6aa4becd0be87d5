"""The inline lane on Lambda: jobs start when the handler returns and end before the freeze.

Under Mangum the whole ASGI cycle, Starlette's background tasks included, runs before the
handler returns, so the client would wait for them; and work left running after the return
is frozen with the execution environment. Here inline jobs deferred during an invocation are
started on a loop thread of their own once the handler is done, and the internal extension
(`offload.aws_lambda.extension`) holds the invocation open until they have ended. A job that
could not end before the invocation's deadline spills to the cpu lane (`InlineRunner`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from offload.core.catalog import TaskSpec
from offload.observability.logs import request_id_var

if TYPE_CHECKING:
    from offload.runtime.inline import InlineRunner

log = logging.getLogger(__name__)


class LambdaInline:
    """Inline jobs of one Lambda execution environment.

    :param new_runner: makes the runner of the jobs (on this object's loop thread only),
        when the first job starts.
    :param margin_s: how long before the invocation's deadline every attempt must end.
    """

    def __init__(self, new_runner: Callable[[], InlineRunner], margin_s: float) -> None:
        self._new_runner = new_runner
        self._runner: InlineRunner | None = None
        self.margin_s = margin_s
        self._deferred: list[tuple[TaskSpec, str, Any, str | None]] = []
        self._changed = threading.Condition()
        self._active = 0
        self._handled: deque[str] = deque(maxlen=64)  # request ids whose handler returned
        self._loop: asyncio.AbstractEventLoop | None = None

    def runner(self) -> InlineRunner:
        """The runner of this object's loop thread, made when the first job starts (the
        handler's import stays free of the attempt runtime)."""
        if self._runner is None:
            self._runner = self._new_runner()
        return self._runner

    def defer(self, spec: TaskSpec, job_id: str, payload: Any) -> None:
        """Keep an inline job until the handler returns (called while the request runs)."""
        with self._changed:
            self._deferred.append((spec, job_id, payload, request_id_var.get()))

    def release(self, remaining_s: float | None) -> int:
        """Start the deferred jobs, to end within `remaining_s` less the margin; how many."""
        deadline = None if remaining_s is None else time.monotonic() + remaining_s - self.margin_s
        with self._changed:
            jobs, self._deferred = self._deferred, []
        if not jobs:
            return 0
        loop = self._running_loop()
        started = 0
        for spec, job_id, payload, request_id in jobs:
            with self._changed:
                self._active += 1  # before the job can end, so settle never misses it
            try:
                run = asyncio.run_coroutine_threadsafe(
                    self.runner().run(spec, job_id, payload, deadline, request_id), loop
                )
            except Exception:
                log.exception("inline job %s could not be started", job_id)
                self._ended(None)
                continue
            run.add_done_callback(self._ended)
            started += 1
        return started

    def handler_done(self, request_id: str) -> None:
        """The handler returned for `request_id` (its jobs are released)."""
        with self._changed:
            self._handled.append(request_id)
            self._changed.notify_all()

    def settle(self, request_id: str, deadline: float) -> bool:
        """Wait until `request_id`'s handler returned and every inline job ended, at most
        until `deadline` (`time.monotonic()`); False if that did not happen in time.

        Called by the extension on INVOKE, which may come before the handler even starts."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: request_id in self._handled, timeout=max(0.0, deadline - time.monotonic())
            ):
                log.error(
                    "invocation %s: the handler did not return before its deadline", request_id
                )
                return False
            if not self._changed.wait_for(
                lambda: self._active == 0, timeout=max(0.0, deadline - time.monotonic())
            ):
                log.error(
                    "invocation %s: %d inline jobs still running at the deadline",
                    request_id,
                    self._active,
                )
                return False
        return True

    @property
    def active(self) -> int:
        """Inline jobs started and not yet ended."""
        with self._changed:
            return self._active

    def _ended(self, _: Future[Any] | None) -> None:
        with self._changed:
            self._active -= 1
            self._changed.notify_all()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        # Made on first use, so that an import (the cold start) does not pay for a thread.
        with self._changed:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="offload-inline-loop", daemon=True
                ).start()
            return self._loop
