"""Several jobs of one batched task in one call: claimed one by one, run together, settled
one by one.

A batch shares a call (one forward pass), never a fate: each job keeps its own claim,
status, result and error. When the call raises, the batch is split in halves and each half
run again, down to single jobs, so the job whose input breaks the call fails alone and the
others succeed. A payload that does not validate fails its job before any call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from offload.aws import claims
from offload.aws.claims import ClaimUnusable
from offload.aws.store import JobStore
from offload.core.catalog import TaskSpec
from offload.core.context import NoSubmitter, Submitter
from offload.errors import AwsUnavailable, InvalidPayload
from offload.observability import metrics
from offload.runtime.attempt import Attempt, kept_result
from offload.runtime.claiming import Verdict
from offload.runtime.outcomes import Busy, Dropped, Outcome, not_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One message of a batch: attempt `attempt` of job `job_id`."""

    job_id: str
    payload: Any
    attempt: int


@dataclass
class BatchReport:
    """What a batch did: an outcome per delivery (in order) and how many calls it took."""

    outcomes: list[Outcome]
    calls: int


def run_batch(
    store: JobStore,
    spec: TaskSpec,
    deliveries: Sequence[Delivery],
    owner: str,
    lease_s: float,
    *,
    whole_batch: tuple[type[BaseException], ...] = (),
    submitter: Submitter | None = None,
) -> BatchReport:
    """Claim, run and settle the deliveries of one batched task, as lease holder `owner`.

    Never raises for one job's sake: a delivery whose claim or record met an AWS outage
    comes back busy (its message is kept, and delivered again).

    :param whole_batch: errors that are the batch's, not one input's (the runtime's time
        limit): every job of the call fails with them, by its own policy, with no split
        (halves would run on past the limit).
    :param submitter: submits the jobs a task's jobs hand work to (none by default)."""
    if spec.batch is None:
        raise ValueError(f"task {spec.name} is not batched")
    outcomes: list[Outcome | None] = [None] * len(deliveries)
    ready: list[tuple[int, Attempt, Any]] = []
    for index, delivery in enumerate(deliveries):
        attempt = Attempt(
            store,
            spec,
            delivery.job_id,
            delivery.attempt,
            delivery.payload,
            owner=owner,
            lease_s=lease_s,
            # None: a batch settles its jobs one after another within one time limit, so
            # waiting out an outage per job could outlast it (RELIABILITY.md, known limits).
            settle_patience_s=0.0,
            submitter=submitter or NoSubmitter(),
        )
        try:
            claimed = attempt.begin()
        except AwsUnavailable as exc:
            log.warning("job %s not claimed: %s", delivery.job_id, exc)
            outcomes[index] = Busy()
            continue
        if claimed.verdict is not Verdict.RUN:
            outcomes[index] = not_run(claimed)
            continue
        try:
            payload = spec.parse(
                claims.resolve(store.settings, delivery.payload, owner=delivery.job_id),
                lane=spec.lane,
            )
        except (InvalidPayload, ClaimUnusable, AwsUnavailable) as exc:
            # A payload's S3 copy out of reach is that job's failed attempt, not the batch's.
            outcomes[index] = _settle(attempt, exc, store)
            continue
        ready.append((index, attempt, payload))
    calls = _run(spec, store, ready, outcomes, whole_batch)
    if ready:
        metrics.count("BatchCalls", spec.name, spec.lane, calls)
        metrics.count("BatchedJobs", spec.name, spec.lane, len(ready))
    return BatchReport([o if o is not None else Dropped() for o in outcomes], calls)


def _run(
    spec: TaskSpec,
    store: JobStore,
    ready: list[tuple[int, Attempt, Any]],
    outcomes: list[Outcome | None],
    whole_batch: tuple[type[BaseException], ...] = (),
) -> int:
    """Call the task on `ready`, splitting on failure; how many calls that took."""
    if not ready:
        return 0
    started = time.monotonic()
    try:
        results = spec.fn([payload for _, _, payload in ready], [a.context for _, a, _ in ready])
        if not isinstance(results, list) or len(results) != len(ready):
            raise TypeError(
                f"batched task {spec.name} returned {type(results).__name__} "
                f"of {len(results) if isinstance(results, list) else '?'} results "
                f"for {len(ready)} jobs"
            )
    except Exception as exc:
        if isinstance(exc, whole_batch):
            log.warning("a batch of %d %s jobs stopped: %s", len(ready), spec.name, exc)
            for index, attempt, _ in ready:
                outcomes[index] = _settle(attempt, exc, store)
            return 1
        if len(ready) == 1:
            index, attempt, _ = ready[0]
            log.info("job %s raised %s in a batch of one", attempt.job_id, type(exc).__name__)
            outcomes[index] = _settle(attempt, exc, store)
            return 1
        half = len(ready) // 2
        log.warning(
            "a batch of %d %s jobs raised %s; running its halves apart",
            len(ready),
            spec.name,
            type(exc).__name__,
        )
        return (
            1
            + _run(spec, store, ready[:half], outcomes, whole_batch)
            + _run(spec, store, ready[half:], outcomes, whole_batch)
        )
    log.info(
        "a batch of %d %s jobs ran in %.3f s", len(ready), spec.name, time.monotonic() - started
    )
    for (index, attempt, _), result in zip(ready, results, strict=True):
        outcomes[index] = _settle(attempt, result, store)
    return 1


def _settle(attempt: Attempt, result: Any, store: JobStore) -> Outcome:
    """Record one job's part of a batch's results."""
    try:
        if isinstance(result, BaseException):
            return attempt.failed(result)
        try:
            encoded = kept_result(result, store.settings, attempt.job_id)
        except Exception as exc:
            return attempt.failed(exc)
        return attempt.succeeded(encoded)
    except AwsUnavailable as exc:
        # Not recorded: the lease lapses and the kept message runs the job again.
        log.warning("job %s: outcome not recorded: %s", attempt.job_id, exc)
        return Busy()
