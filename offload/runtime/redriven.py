"""Jobs whose message SQS dead-lettered by itself: received `maxReceiveCount` times, and
never finished, because each worker that took it died or could not reach AWS. No worker is
left to end such a job, so the sweep ends it FAILURE with the reason, naming its task and
lane (`offload.runtime.unrunnable`); the dead letter stays, for an operator to replay.

A dead letter that offload made itself carries a `reason` attribute and its job has ended
already; only SQS's own (no attribute) are looked at here.
"""

from __future__ import annotations

import logging

from offload.aws.dlq import REDRIVEN, DeadLetter, DeadLetters
from offload.core.model import JobStatus
from offload.errors import AwsUnavailable
from offload.runtime.unrunnable import fail_unrunnable, unrunnable_error
from offload.settings import QueueLane

log = logging.getLogger(__name__)

# The lease holder the sweep's attempt is recorded under.
SWEEP_OWNER = "sweep"
# Dead letters looked at per lane and sweep.
_PEEK = 100


def end_redriven(dead_letters: DeadLetters, lane: QueueLane) -> list[str]:
    """Fail the jobs still waiting on a message SQS dead-lettered; their ids."""
    ended = []
    for letter in dead_letters.peek(lane, limit=_PEEK):
        if letter.reason != REDRIVEN or letter.job_id is None:
            continue
        try:
            if _end(dead_letters, lane, letter):
                ended.append(letter.job_id)
        except AwsUnavailable as exc:
            log.warning("job %s of a redriven message not ended yet: %s", letter.job_id, exc)
    return ended


def _end(dead_letters: DeadLetters, lane: QueueLane, letter: DeadLetter) -> bool:
    assert letter.job_id is not None
    store = dead_letters.store
    job = store.get(letter.job_id)
    if job.status.terminal or job.attempts > (letter.attempt or 1):
        return False  # ended, or a later attempt has a message of its own
    why = (
        f"its message was received {letter.receive_count} times and never finished (its "
        "workers died or could not reach AWS), so SQS dead-lettered it"
    )
    error = unrunnable_error(letter.task or job.task, lane, why)
    ended = fail_unrunnable(store, letter.job_id, error, SWEEP_OWNER)
    if ended is None or ended.status is not JobStatus.FAILURE or ended.error != error:
        return False  # running under a live lease after all, or it moved meanwhile
    log.error("job %s: %s", letter.job_id, error.message)
    return True
