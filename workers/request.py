"""Celery's request, with a hard time limit recorded on the job (in the main process).

When the hard limit ends a pool process, the task never learns of it; Celery's own
handler then only logs, and puts the message back. This records the attempt as ended by
`TimeLimitExceeded` first, so the job is retried or failed per its task's policy.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker import state as worker_state
from celery.worker.request import Request

from workers.heartbeat import lease_owner

log = logging.getLogger(__name__)


class OffloadRequest(Request):  # type: ignore[misc]
    """A request whose hard time limit is recorded on its job."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Record a hard limit on the job, then let Celery do the rest."""
        if not soft and not worker_state.should_terminate and self.worker_pid:
            _record(self, timeout)
        super().on_timeout(soft, timeout)


def _record(request: Any, timeout: float) -> None:
    # Imported here: workers.app imports this module to name it as the tasks' Request.
    from workers.app import spec_of
    from workers.runtime import runtime_for

    spec, settings = spec_of(request.task)
    owner = lease_owner(request.hostname, request.worker_pid)
    try:
        runtime_for(settings).time_limit_exceeded(spec, request.id, owner, timeout)
    except Exception:
        # The lease then lapses and the next delivery takes the job over (WorkerLost).
        log.exception("job %s: hard time limit not recorded", request.id)
