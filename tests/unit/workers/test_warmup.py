"""Pool processes warm up (load models) before the worker consumes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from offload import Batch, Payload
from offload.core.catalog import Catalog
from workers.warmup import wait_until_warm, warm

loaded: list[str] = []


class Nothing(Payload):
    pass


catalog = Catalog()


@catalog.task("w.gpu", lane="gpu", payload=Nothing, warmup=lambda: loaded.append("gpu model"))
def on_gpu(payload: Nothing, ctx: Any) -> None:
    pass


@catalog.task(
    "w.cpu", lane="cpu", payload=Nothing, batch=Batch(), warmup=lambda: loaded.append("cpu")
)
def on_cpu(payloads: list[Nothing], ctxs: list[Any]) -> list[None]:
    return [None] * len(payloads)


def app(consumes: list[str], counters: Any = None) -> Any:
    made = SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=consumes)))
    if counters is not None:
        made.offload_warm = counters
    return made


def counters() -> tuple[Any, Any]:
    context = multiprocessing.get_context("fork")
    return context.Value("i", 0), context.Value("i", 0)


@pytest.fixture(autouse=True)
def fresh() -> None:
    loaded.clear()


def test_only_the_consumed_lanes_warm_up() -> None:
    assert warm(app(["gpu"]), catalog) == ["w.gpu"]
    assert loaded == ["gpu model"]


def test_the_consumer_waits_for_every_pool_process() -> None:
    ready, failed = counters()
    pool = SimpleNamespace(num_processes=2)

    def processes_start() -> None:
        for _ in range(2):
            time.sleep(0.2)
            with ready.get_lock():
                ready.value += 1

    threading.Thread(target=processes_start).start()
    started = time.monotonic()
    wait_until_warm(app(["gpu"], (ready, failed)), pool, catalog, timeout_s=10)
    assert time.monotonic() - started >= 0.35
    assert loaded == []  # the processes load, not the consumer


def test_a_failed_load_stops_the_worker() -> None:
    ready, failed = counters()
    failed.value = 1
    with pytest.raises(RuntimeError, match="warmup failed"):
        wait_until_warm(app(["gpu"], (ready, failed)), SimpleNamespace(num_processes=1), None, 5)


def test_a_load_that_takes_too_long_stops_the_worker() -> None:
    with pytest.raises(RuntimeError, match="did not warm up within 0.2 s"):
        wait_until_warm(app(["gpu"], counters()), SimpleNamespace(num_processes=1), None, 0.2)


def test_a_pool_without_processes_warms_up_in_the_consumer() -> None:
    wait_until_warm(app(["cpu"]), SimpleNamespace(), catalog, timeout_s=5)
    assert loaded == ["cpu"]
