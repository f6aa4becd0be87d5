"""The Celery app: `celery -A workers.app worker -Q cpu` works as Celery users expect.

Queues are predefined (kombu never lists or creates them), acks are late (a crash
redelivers), and there is no Celery result backend: DynamoDB holds every job's status.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, signals
from celery.exceptions import Reject
from celery.worker import state as worker_state
from kombu import Queue  # type: ignore[attr-defined]

import tasks
from offload.aws.queues import QUEUE_LANES, queue_lane
from offload.core.catalog import Catalog, TaskSpec
from offload.errors import AwsUnavailable
from offload.observability import logs
from offload.runtime.outcomes import Busy
from offload.settings import Settings, get_settings
from workers import warmup
from workers.heartbeat import Heartbeat, lease_owner
from workers.lifecycle import Drain
from workers.runtime import runtime_for
from workers.sqs_transport import client_config

log = logging.getLogger(__name__)


def broker_url(settings: Settings) -> str:
    """kombu's SQS URL: the local endpoint's host and port, or plain `sqs://` on AWS."""
    if not settings.aws_endpoint_url:
        return "sqs://"
    endpoint = urlsplit(settings.aws_endpoint_url)
    port = f":{endpoint.port}" if endpoint.port else ""
    return f"sqs://testing:testing@{endpoint.hostname}{port}"


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> Celery:
    """A Celery app that runs every queue-lane task of `catalog`."""
    settings = settings or get_settings()
    catalog = catalog or tasks.catalog()
    app = Celery("offload")
    secure = not settings.aws_endpoint_url or settings.aws_endpoint_url.startswith("https")
    app.conf.update(
        broker_url=broker_url(settings),
        # kombu's SQS transport, made to survive failed SQS calls (workers/sqs_transport.py).
        broker_transport="workers.sqs_transport:Transport",
        broker_transport_options={
            "region": settings.aws_region,
            "is_secure": secure,
            # No kombu backoff_policy: with it, kombu 5.7 crashes the worker (KeyError
            # 'sqs_message') when Celery requeues a delivery (hard time limit, lost process).
            # A rejected delivery waits out its visibility timeout instead.
            "predefined_queues": {lane: {"url": settings.queue_url(lane)} for lane in QUEUE_LANES},
            "wait_time_seconds": settings.worker_wait_time_s,
            "client-config": client_config(settings.worker_wait_time_s),
        },
        broker_connection_retry_on_startup=True,
        task_default_queue="cpu",
        task_queues=[Queue(lane, routing_key=lane) for lane in QUEUE_LANES],  # type: ignore[no-untyped-call]
        task_create_missing_queues=False,
        task_acks_late=True,
        # A delivery whose pool child died or hit the hard time limit stays on the queue:
        # its job's lease lapses and the next delivery takes it over as a new attempt.
        # (Celery's defaults would ack it, leaving the job STARTED with no message.)
        task_acks_on_failure_or_timeout=False,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        # SQS has no fanout: remote control, events and gossip would need queues it lacks.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        # A pool process reports ready only after its warmup (loading a model takes seconds);
        # Celery's default 4 s would kill every replacement process before it is warm.
        worker_proc_alive_timeout=settings.worker_warmup_timeout_s + 30,
        # Powertools' EMF metric lines go to stdout as they are, not wrapped in a log line.
        worker_redirect_stdouts=False,
        worker_consumer="workers.consumer:DeadLetteringConsumer",
        # Messages sent with Celery's own API land on the task's lane queue (they need a job
        # record made by offload to run; without one they are dropped with a warning).
        task_routes={spec.name: {"queue": queue_lane(spec)} for spec in _queued(catalog)},
    )
    # Inline tasks too: an API process that cannot run one in time spills it to the cpu lane.
    for spec in _queued(catalog):
        _register(app, spec, settings)
    _beat_while_running(app, settings)
    warmup.prepare(app, catalog)
    app.offload_settings = settings  # the consumer dead-letters to this app's queues
    app.offload_catalog = catalog
    return app


def _queued(catalog: Catalog) -> list[TaskSpec]:
    """The tasks workers run: all but the sagemaker lane's (SageMaker runs those)."""
    return [spec for spec in catalog if spec.lane != "sagemaker"]


def _beat_while_running(app: Celery, settings: Settings) -> None:
    """Run the heartbeat from the worker's readiness to the very end of its shutdown."""
    beats: list[Heartbeat] = []
    drains: list[Drain] = []

    def ready(sender: Any, **_: Any) -> None:
        if sender.app is app:
            beat = Heartbeat(settings, sender.pool, lambda: worker_state.reserved_requests)
            beat.start()
            beats.append(beat)
            if Drain.wanted(settings):
                drains.append(Drain(settings).start())

    def shutting_down(sender: Any, **_: Any) -> None:
        # SIGTERM: Celery stops taking messages and waits for running tasks; give them the
        # grace period, then hand the rest to other workers at once.
        for beat in beats:
            beat.release_after(settings.worker_shutdown_grace_s)

    def shutdown(sender: Any, **_: Any) -> None:
        while beats:
            beats.pop().stop()
        while drains:
            drain = drains.pop()
            drain.close()
            try:
                drain.complete()  # the running jobs are done or handed on: let it go
            except Exception as exc:  # the hook's timeout lets the instance go anyway
                log.error("drained, but the lifecycle action was not completed: %s", exc)

    def setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
        # Connected, this replaces Celery's own logging set-up: JSON lines with job ids.
        logs.configure(
            "offload-worker",
            loglevel or settings.log_level,
            error_messages=settings.log_error_messages,
        )

    # Not weak: the handlers are closures that would otherwise be collected at once.
    signals.setup_logging.connect(setup_logging, weak=False)
    signals.worker_ready.connect(ready, weak=False)
    signals.worker_shutting_down.connect(shutting_down, weak=False)
    signals.worker_shutdown.connect(shutdown, weak=False)


def _register(app: Celery, spec: TaskSpec, settings: Settings) -> None:
    def run(self: Any, payload: Any = None, attempt: int = 1) -> None:
        owner = lease_owner(self.request.hostname, os.getpid())
        try:
            outcome = runtime_for(settings).execute(spec, self.request.id, payload, attempt, owner)
        except AwsUnavailable as exc:
            # Not the task's fault: leave the message on the queue. With a redrive policy
            # kombu keeps a rejected message, which returns after its visibility timeout;
            # after maxReceiveCount deliveries SQS dead-letters it. An outage neither spins
            # nor loses the job.
            raise Reject(str(exc), requeue=False) from exc
        if isinstance(outcome, Busy):
            # Another worker holds the job's live lease (or the store was out): keep the
            # message (back after its visibility timeout), so it still runs if that worker
            # dies.
            raise Reject("job busy elsewhere", requeue=False)

    run.__name__ = run.__qualname__ = spec.name.replace(".", "_")
    run.__doc__ = spec.description
    batched = {} if spec.batch is None else {"Strategy": "workers.batching:batch_strategy"}
    task = app.task(
        **batched,
        name=spec.name,
        bind=True,
        shared=False,  # each app (tests make several) registers its own
        time_limit=spec.timeout_s + settings.hard_limit_grace_s,
        soft_time_limit=spec.timeout_s,
        ignore_result=True,
        Request="workers.request:OffloadRequest",
    )(run)
    task.offload_spec = spec
    task.offload_settings = settings


def spec_of(task: Any) -> tuple[TaskSpec, Settings]:
    """The offload task behind a Celery task, and the settings it runs with."""
    return task.offload_spec, task.offload_settings


app = create_app()
