"""What a worker does with one delivery: run the attempt, then schedule a retry on SQS.

The Celery task around it stays thin (STYLE.md 4): parsing, status and retries live here.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from offload.catalog import TaskSpec
from offload.errors import AwsUnavailable
from offload.execution import Attempt, Outcome
from offload.queues import QueuePublisher
from offload.settings import Settings
from offload.store import JobStore

log = logging.getLogger(__name__)


class Runtime:
    """The store and publisher of one worker process (made after the pool forks).

    :param settings: the worker's settings.
    """

    def __init__(self, settings: Settings) -> None:
        self.store = JobStore(settings)
        self.publisher = QueuePublisher(settings)

    def execute(
        self, spec: TaskSpec, job_id: str, payload: Any, attempt: int, owner: str
    ) -> Outcome:
        """Run the delivery of attempt `attempt` of a job, as lease holder `owner`.

        A retry is a new SQS message with a delay, so no ETA sits in worker memory and the
        worker's slot is free while the job waits."""
        settings = self.store.settings
        outcome = Attempt(
            self.store, spec, job_id, attempt, payload, owner=owner, lease_s=settings.lease_s
        ).run()
        log.info(
            "job %s (%s) delivery of attempt %d: %s",
            job_id,
            spec.name,
            attempt,
            outcome.status.value if outcome.status else ("busy" if outcome.busy else "dropped"),
        )
        if outcome.retry_in_s is not None:
            try:
                self.publisher.send(
                    spec, job_id, payload, attempt=outcome.attempt + 1, delay_s=outcome.retry_in_s
                )
            except AwsUnavailable:
                # boto3 already retried; the job now waits in RETRY for an operator.
                log.error("job %s: retry %d could not be queued", job_id, outcome.attempt + 1)
                raise
        return outcome


@lru_cache(maxsize=1)
def runtime_for(settings: Settings) -> Runtime:
    """The process's runtime, made on first use (in the pool child, after fork)."""
    return Runtime(settings)
