"""Gathering the messages of a batched task into one pool call.

We judged `celery-batches` (0.11) first: it buffers requests in the consumer much like this
module does, but against our guarantees it falls short. Its requests never enter the
worker's reserved set, so our heartbeat would not extend their visibility (long batches
would run twice); it sends the batch to the pool without time limits and without an error
callback, so a lost or killed pool process leaves its messages unacked in kombu's QoS and
the consumer stalls; and it acks every message on return, whatever each job's outcome
(a job whose claim found it busy elsewhere must keep its message). So this module keeps its
approach (a task Strategy, a buffer flushed by size or by a timer) and does the rest as
Celery's own Request does: each message is a real Request, reserved for the heartbeat,
accepted, timed out and failed through Request's handlers, and acked or kept one by one.

The gpu worker raises its prefetch so a batch can fill (kombu receives up to 10 SQS
messages per call); waiting messages stay covered by the heartbeat meanwhile.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.imports import symbol_by_name
from celery.worker.request import create_request_cls
from celery.worker.state import task_ready, task_reserved
from celery.worker.strategy import hybrid_to_proto2, proto1_to_proto2

from offload.aws.queues import queue_lane
from offload.errors import AwsUnavailable
from offload.runtime.batches import Delivery, run_batch
from offload.runtime.outcomes import Busy
from workers.heartbeat import lease_owner

log = logging.getLogger(__name__)


def batch_strategy(task: Any, app: Any, consumer: Any, **_: Any) -> Callable[..., None]:
    """Celery's task Strategy for a batched task (named by the task's `Strategy`)."""
    from workers.app import spec_of  # workers.app names this module in its tasks

    spec, _settings = spec_of(task)
    assert spec.batch is not None
    max_size, max_wait_s = spec.batch.max_size, spec.batch.max_wait_ms / 1000
    hostname = consumer.hostname
    request_cls = create_request_cls(
        symbol_by_name(task.Request),
        task,
        consumer.pool,
        hostname,
        consumer.event_dispatcher,
        app=app,
    )
    buffer: list[Any] = []
    flush_timer: list[Any] = []  # the pending timer entry, if any

    consumed = set(getattr(app.amqp.queues, "consume_from", None) or ())
    if queue_lane(spec) in consumed:
        _prefetch_for(consumer, max_size)

    def flush() -> None:
        while flush_timer:
            flush_timer.pop().cancel()
        batch = buffer[:]
        buffer.clear()
        if batch:
            _dispatch(task, consumer.pool, hostname, batch)

    def on_message(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **__: Any
    ) -> None:
        if body is None and "args" not in message.payload:
            body, headers, decoded, utc = (
                message.body,
                message.headers,
                False,
                app.uses_utc_timezone(),
            )
        elif "args" in message.payload:
            body, headers, decoded, utc = hybrid_to_proto2(message, message.payload)
        else:
            body, headers, decoded, utc = proto1_to_proto2(message, body)
        request = request_cls(
            message,
            on_ack=ack,
            on_reject=reject,
            app=app,
            hostname=hostname,
            eventer=consumer.event_dispatcher,
            task=task,
            connection_errors=consumer.connection_errors,
            body=body,
            headers=headers,
            decoded=decoded,
            utc=utc,
        )
        if request.revoked():
            return
        signals.task_received.send(sender=consumer, request=request)
        task_reserved(request)  # the heartbeat keeps it invisible while it waits
        buffer.append(request)
        if len(buffer) >= max_size:
            flush()
        elif not flush_timer:
            flush_timer.append(consumer.timer.call_after(max_wait_s, flush))

    return on_message


def _prefetch_for(consumer: Any, max_size: int) -> None:
    """Let the consumer hold a full batch per pool process (else a batch never fills).

    Strategies are made before the consumer sets its prefetch (and again at each
    reconnection): raise the count it starts from, from the configured one, idempotently."""
    base = getattr(consumer, "offload_base_prefetch", None)
    if base is None:
        base = consumer.offload_base_prefetch = consumer.initial_prefetch_count
    processes = getattr(consumer.pool, "num_processes", None) or 1
    wanted = base + (max_size - 1) * processes
    if consumer.initial_prefetch_count < wanted:
        consumer.initial_prefetch_count = wanted


def _dispatch(task: Any, pool: Any, hostname: str, batch: list[Any]) -> None:
    """Send one batch to the pool; each request then ends through its own handlers."""
    deliveries = [
        (r.id, (r.kwargs or {}).get("payload"), int((r.kwargs or {}).get("attempt", 1)))
        for r in batch
    ]

    def accepted(pid: int, time_accepted: float) -> None:
        for request in batch:
            request.on_accepted(pid, time_accepted)

    def timed_out(soft: bool, timeout: float) -> None:
        for request in batch:
            request.on_timeout(soft, timeout)

    def returned(keep: list[bool]) -> None:
        for request, keep_message in zip(batch, keep, strict=True):
            if keep_message:
                # Busy elsewhere, or AWS unreachable: back after its visibility timeout.
                request.reject(requeue=False)
            else:
                request.acknowledge()
            task_ready(request, successful=True)

    def failed(exc_info: Any) -> None:
        # The pool process was lost or killed (hard time limit): as for a single task.
        for request in batch:
            request.on_failure(exc_info, send_failed_event=True, return_ok=False)

    log.info("sending a batch of %d %s jobs to the pool", len(batch), task.name)
    try:
        pool.apply_async(
            run_in_pool,
            args=(task, deliveries, hostname),
            accept_callback=accepted,
            timeout_callback=timed_out,
            callback=returned,
            error_callback=failed,
            soft_timeout=task.soft_time_limit,
            timeout=task.time_limit,
            correlation_id=batch[0].id,
        )
    except Exception:
        # The pool refused the batch: hand every message back (it returns after its
        # visibility timeout) rather than leave it reserved, unsettled, for ever.
        log.exception("a batch of %d %s jobs could not be sent to the pool", len(batch), task.name)
        for request in batch:
            request.reject(requeue=False)
            task_ready(request)


def run_in_pool(task: Any, deliveries: list[tuple[str, Any, int]], hostname: str) -> list[bool]:
    """In the pool process: run the batch; for each message, True to keep it (not ack)."""
    from workers.app import spec_of
    from workers.runtime import runtime_for

    spec, settings = spec_of(task)
    runtime = runtime_for(settings)
    owner = lease_owner(hostname, os.getpid())
    batch = [Delivery(job_id, payload, attempt) for job_id, payload, attempt in deliveries]
    report = run_batch(
        runtime.store,
        spec,
        batch,
        owner,
        settings.lease_s,
        whole_batch=(SoftTimeLimitExceeded,),
        submitter=runtime.submitter,
    )
    keep = []
    for delivery, outcome in zip(batch, report.outcomes, strict=True):
        try:
            runtime.settle(spec, delivery.job_id, delivery.payload, delivery.attempt, outcome)
        except AwsUnavailable:
            keep.append(True)  # its retry is not queued: the kept message runs it later
            continue
        keep.append(isinstance(outcome, Busy))
    return keep
