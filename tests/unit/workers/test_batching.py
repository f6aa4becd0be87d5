"""A batch the pool refuses hands its messages back instead of stranding them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from celery.worker import state

from workers.batching import _dispatch


class Refusing:
    def apply_async(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the pool is closing")


rejected: list[str] = []


class Request:
    """What the batch path uses of Celery's Request (weak-referenceable, as Celery keeps it)."""

    def __init__(self, job_id: str) -> None:
        self.id = job_id
        self.kwargs = {"payload": {}, "attempt": 1}

    def reject(self, requeue: bool = False) -> None:
        rejected.append(self.id)


def test_a_batch_the_pool_refuses_is_rejected_and_released() -> None:
    requests = [Request(f"job-{n}") for n in range(2)]
    for request in requests:
        state.task_reserved(request)
    task = SimpleNamespace(name="t", soft_time_limit=1, time_limit=2)
    _dispatch(task, Refusing(), "host", requests)
    assert rejected == ["job-0", "job-1"]
    assert not any(r in state.reserved_requests for r in requests)
