"""The baselines' brokers and workers for the dispatch benchmark: a queue on the local
stack's moto server, Debian's `redis-server` when it is installed, and plain Celery workers
(`bench/plain_celery.py`) on either."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.processes import NotServing, running
from infra.local.dev import free_port
from infra.local.stack import Clients
from offload.settings import Settings

PLAIN_QUEUE = "bench-plain"


def plain_sqs_queue(settings: Settings) -> str:
    """Create the plain Celery queue beside offload's, with the same visibility timeout."""
    sqs = Clients.for_endpoint(settings).sqs
    timeout = str(settings.queue_visibility_timeout_s)
    return sqs.create_queue(QueueName=PLAIN_QUEUE, Attributes={"VisibilityTimeout": timeout})[
        "QueueUrl"
    ]


@contextlib.contextmanager
def redis_server(log_dir: Path) -> Iterator[str | None]:
    """A throwaway redis-server on a free port (no persistence); None when not installed."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    import redis

    port = free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    log = log_dir / "redis.log"
    with running(argv, log) as process:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise NotServing(f"redis-server did not start: {log.read_text()}") from exc
                time.sleep(0.1)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def celery_worker(
    name: str,
    broker_url: str,
    queue_url: str | None,
    marks: Path,
    concurrency: int,
    prefetch_multiplier: int,
    log_dir: Path,
) -> Iterator[None]:
    """A plain Celery worker on `broker_url`, returned once it says it is ready."""
    argv = [
        *(sys.executable, "-m", "celery", "-A", "bench.plain_celery", "worker"),
        *("-Q", PLAIN_QUEUE, "-n", f"{name}@%h", "-c", str(concurrency), "-l", "info"),
        *("--prefetch-multiplier", str(prefetch_multiplier)),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    env = {"BENCH_BROKER_URL": broker_url, "BENCH_QUEUE": PLAIN_QUEUE, "BENCH_MARKS": str(marks)}
    if queue_url:
        env["BENCH_QUEUE_URL"] = queue_url
    log = log_dir / f"{name}.log"
    with running(argv, log, env) as process:
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise NotServing(f"{name} worker not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
