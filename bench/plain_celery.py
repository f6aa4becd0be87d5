"""The dispatch benchmark's baseline: plain Celery, a no-op task, no status tracking and no
result backend, on SQS (the same moto server as offload) or on Redis.

The worker runs `celery -A bench.plain_celery worker` and takes its broker from the
environment (`BENCH_BROKER_URL`, `BENCH_QUEUE`, `BENCH_QUEUE_URL` for SQS); each task appends
`<task id> <start> <end>` (`time.time()`) to `BENCH_MARKS`, one short write per task, so that
submit-to-start latency is measured on the same clock as the submitter's.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

TASK = "bench.noop"


def make_app(broker_url: str, queue: str, queue_url: str | None, marks: str | None) -> Celery:
    """A Celery app configured as offload's workers are, less offload: late acks, no
    results, no remote control, the same long poll on SQS. (The worker's command line sets
    its prefetch, as offload's batching raises its own.)"""
    app = Celery("plain", broker=broker_url)
    options: dict[str, Any] = {}
    if broker_url.startswith("sqs://"):
        options = {
            "region": "us-east-1",
            "is_secure": False,
            "predefined_queues": {queue: {"url": queue_url}},
            "wait_time_seconds": 10,
        }
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_default_queue=queue,
        task_queues=[Queue(queue, routing_key=queue)],  # type: ignore[no-untyped-call]
        task_create_missing_queues=False,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )

    @app.task(name=TASK)  # type: ignore[untyped-decorator]
    def noop() -> None:
        started = time.time()
        if marks:
            with open(marks, "a", encoding="utf-8") as file:
                file.write(f"{noop.request.id} {started:.6f} {time.time():.6f}\n")

    return app


app = make_app(
    os.environ.get("BENCH_BROKER_URL", "memory://"),
    os.environ.get("BENCH_QUEUE", "bench-plain"),
    os.environ.get("BENCH_QUEUE_URL"),
    os.environ.get("BENCH_MARKS"),
)
