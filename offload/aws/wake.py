"""Waking a job that waits for a child job it submitted (offload.runtime.waiting), once that
child has ended: the parent's wait falls due now and its message goes now. The child's last
write does this, on whichever side ended it (a worker, a cancel, a SageMaker notification).
"""

from __future__ import annotations

import logging

from offload.aws import transitions
from offload.aws.queues import QueuePublisher
from offload.aws.store import JobStore
from offload.core.catalog import CATALOG, Catalog
from offload.core.model import Job
from offload.errors import JobStateConflict

log = logging.getLogger(__name__)


def wake_parent(store: JobStore, child: Job, catalog: Catalog = CATALOG) -> bool:
    """Wake the job waiting for `child`, which has ended. Whether one was woken; never
    raises (the parent's recheck message resumes it anyway)."""
    if child.parent_id is None:
        return False
    try:
        parent = store.apply(transitions.wake(child.parent_id, child.job_id))
    except JobStateConflict:
        return False  # it no longer waits for this job (resumed by its recheck, cancelled)
    except Exception as exc:
        log.warning("job %s ended; its parent %s not woken: %s", child.job_id, child.parent_id, exc)
        return False
    try:
        spec = catalog.get(parent.task)
        QueuePublisher(store.settings).send(
            spec, parent.job_id, parent.payload, attempt=parent.attempts
        )
    except Exception as exc:
        # Whatever failed (an outage, a permission, a task renamed away), the child's own
        # end must not fail with it: the parent's recheck message resumes it anyway.
        log.warning("job %s: its waiting parent %s not sent: %s", child.job_id, parent.job_id, exc)
        return False
    log.info("job %s ended; woke job %s", child.job_id, parent.job_id)
    return True
