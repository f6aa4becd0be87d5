"""How the dispatch benchmark feeds and times each system: offload through its API, plain
Celery through `send_task`; per job, when its submit was sent, it started and it ended."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from bench.plain_celery import TASK, make_app
from bench.stats import percentile
from infra.local.dev import LocalSystem
from offload.aws.store import JobStore

# offload's no-op: a cpu-lane task that returns at once when told to fail no time.
NOOP = ("diag.flaky", {"fail_times": 0})
ROUND_TIMEOUT_S = 300.0


@dataclass
class Timings:
    """Per job of one round: when its submit was sent, it started and it ended."""

    submitted: list[float]
    started: list[float]
    ended: list[float]

    def figures(self) -> dict[str, float]:
        """Throughput (jobs/s), submit rate and submit-to-start latency (ms) of the round."""
        first, n = min(self.submitted), len(self.submitted)
        latencies = [(s - t) * 1000 for s, t in zip(self.started, self.submitted, strict=True)]
        return {
            "throughput": n / (max(self.ended) - first),
            "submit_rate": n / max(max(self.submitted) - first, 1e-9),
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p99_ms": percentile(latencies, 99),
        }


class Variant(Protocol):
    name: str

    def run(self, jobs: int, submitters: int) -> Timings: ...


def submit_all(jobs: int, submitters: int, send: Callable[[], str]) -> dict[str, float]:
    """Call `send` `jobs` times from `submitters` threads; {job id: time its submit began}."""
    sent: dict[str, float] = {}

    def one(_: int) -> None:
        at = time.time()
        sent[send()] = at

    with ThreadPoolExecutor(submitters) as pool:
        list(pool.map(one, range(jobs)))
    return sent


def wait_until(done: Callable[[], bool], what: str) -> None:
    """Poll `done` until it holds; TimeoutError after ROUND_TIMEOUT_S."""
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not done within {ROUND_TIMEOUT_S:g} s")
        time.sleep(0.2)


class Offload:
    """offload's API and cpu worker."""

    name = "offload"

    def __init__(self, system: LocalSystem) -> None:
        self.system = system
        self.store = JobStore(system.settings())

    def run(self, jobs: int, submitters: int) -> Timings:
        task, payload = NOOP
        limits = httpx.Limits(max_connections=submitters)
        with httpx.Client(base_url=self.system.api_url, timeout=60, limits=limits) as api:

            def post() -> str:
                response = api.post("/jobs", json={"task": task, "payload": payload})
                response.raise_for_status()
                job_id: str = response.json()["job_id"]
                return job_id

            sent = submit_all(jobs, submitters, post)
        ids = list(sent)
        # Jobs end in about the order they were sent: wait on the oldest one still open.
        position = 0

        def all_ended() -> bool:
            nonlocal position
            while position < len(ids) and self.store.get(ids[position]).status.terminal:
                position += 1
            return position == len(ids)

        wait_until(all_ended, "offload's jobs")
        found = [self.store.get(job_id) for job_id in ids]
        for job in found:
            if job.started_at is None or job.finished_at is None:
                raise RuntimeError(f"job {job.job_id} ended {job.status} without times")
        return Timings(
            [sent[job.job_id] for job in found],
            [job.started_at.timestamp() for job in found if job.started_at],
            [job.finished_at.timestamp() for job in found if job.finished_at],
        )


class PlainCelery:
    """Plain Celery: a worker started by `brokers.celery_worker`, fed with `send_task`."""

    def __init__(self, name: str, broker_url: str, queue: str, queue_url: str | None, marks: Path):
        self.name = name
        self.queue = queue
        self.marks = marks
        self.app = make_app(broker_url, queue, queue_url, None)

    def _send(self) -> str:
        task_id = str(uuid.uuid4())
        self.app.send_task(TASK, task_id=task_id, queue=self.queue)
        return task_id

    def _lines(self) -> list[str]:
        return self.marks.read_text(encoding="utf-8").splitlines()

    def run(self, jobs: int, submitters: int) -> Timings:
        self.marks.write_text("", encoding="utf-8")
        sent = submit_all(jobs, submitters, self._send)
        wait_until(lambda: len(self._lines()) >= jobs, f"{self.name}'s tasks")
        marks = {i: (float(s), float(e)) for i, s, e in (line.split() for line in self._lines())}
        return Timings(
            [sent[i] for i in sent], [marks[i][0] for i in sent], [marks[i][1] for i in sent]
        )
