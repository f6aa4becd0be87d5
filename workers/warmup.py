"""Models load once per pool process, before the worker takes a single message.

Each pool process runs the `warmup` of every task on the lanes this worker consumes (load a
model, onto CUDA when there is one) as it starts; the consumer connects to the queues only
once every process has done so. Otherwise the first jobs would pay for the load, or wait
behind it with their visibility ticking. Loading happens in the pool processes, never in the
parent: CUDA initialised before a fork is unusable in the children.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

from celery import signals

from offload.aws.queues import queue_lane
from offload.core.catalog import Catalog

log = logging.getLogger(__name__)


def prepare(app: Any, catalog: Catalog) -> None:
    """Connect the warm-up to `app`'s worker: counters made before the pool forks, the
    loads run in each pool process."""

    ours: Any = app  # compared below; `app` keeps its type for the assignment

    def before_pool(sender: Any, **_: Any) -> None:
        if getattr(sender, "app", None) is ours:
            # Shared memory made before the fork: the pool processes count into it.
            context = multiprocessing.get_context("fork")
            app.offload_warm = (context.Value("i", 0), context.Value("i", 0))  # ready, failed

    def in_pool_process(**_: Any) -> None:
        counters = getattr(app, "offload_warm", None)
        if counters is None:
            return  # another app's worker
        ready, failed = counters
        try:
            warm(app, catalog)
        except BaseException:
            log.exception("a model failed to load; this worker will not take messages")
            with failed.get_lock():
                failed.value += 1
            raise
        with ready.get_lock():
            ready.value += 1

    signals.worker_init.connect(before_pool, weak=False)
    signals.worker_process_init.connect(in_pool_process, weak=False)


def warm(app: Any, catalog: Catalog) -> list[str]:
    """Run the warm-ups of the tasks on the lanes `app`'s worker consumes; their names."""
    lanes = set(getattr(app.amqp.queues, "consume_from", None) or ())
    warmed = []
    for spec in catalog:
        if spec.lane == "sagemaker" or spec.warmup is None:
            continue
        if not lanes or queue_lane(spec) in lanes:
            started = time.monotonic()
            spec.warmup()
            log.info("%s warmed up in %.1f s", spec.name, time.monotonic() - started)
            warmed.append(spec.name)
    return warmed


def wait_until_warm(app: Any, pool: Any, catalog: Catalog | None, timeout_s: float) -> None:
    """Block the consumer until every pool process has warmed up (prefork), or warm up
    here (pools without processes); `RuntimeError` when a load failed or took too long."""
    counters = getattr(app, "offload_warm", None)
    processes = getattr(pool, "num_processes", None)
    if counters is None or not isinstance(processes, int) or processes < 1:
        if catalog is not None:
            warm(app, catalog)
        return
    ready, failed = counters
    deadline = time.monotonic() + timeout_s
    while ready.value < processes:
        if failed.value:
            raise RuntimeError("a task's warmup failed in a pool process; see the log above")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"pool processes did not warm up within {timeout_s:g} s "
                f"({ready.value} of {processes} ready)"
            )
        time.sleep(0.1)
    log.info("all %d pool processes warmed up: taking messages", processes)
