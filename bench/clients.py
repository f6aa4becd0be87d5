"""Clients as `offload submit --wait` is one: submit a job, then long-poll
`GET /jobs/{id}?wait=20` until it ends, counting the API requests and the time they took."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

WAIT_S = 20  # what `offload submit --wait` asks for
TERMINAL = ("SUCCESS", "FAILURE", "REVOKED")


def follow(api: httpx.Client, task: str, payload: dict[str, Any]) -> tuple[int, float, str]:
    """Submit one job and long-poll it to its end: API requests made, seconds they took
    (what a Lambda behind API Gateway is billed for), and its final status."""
    requests, seconds = 1, 0.0
    started = time.perf_counter()
    response = api.post("/jobs", json={"task": task, "payload": payload})
    response.raise_for_status()
    job = response.json()
    seconds += time.perf_counter() - started
    while job["status"] not in TERMINAL:
        started = time.perf_counter()
        response = api.get(f"/jobs/{job['job_id']}", params={"wait": WAIT_S})
        response.raise_for_status()
        job = response.json()
        seconds += time.perf_counter() - started
        requests += 1
    return requests, seconds, job["status"]


def run_jobs(
    api_url: str, task: str, payload: dict[str, Any], jobs: int, clients: int
) -> dict[str, Any]:
    """`jobs` jobs of `task`, `clients` at a time; what the clients made of them."""
    with (
        httpx.Client(base_url=api_url, timeout=WAIT_S + 30) as api,
        ThreadPoolExecutor(clients) as pool,
    ):
        outcomes = list(pool.map(lambda _: follow(api, task, payload), range(jobs)))
    failed = [status for _, _, status in outcomes if status != "SUCCESS"]
    if failed:
        raise RuntimeError(f"{len(failed)} {task} jobs did not succeed: {failed[:5]}")
    return {
        "api_requests": sum(r for r, _, _ in outcomes),
        "api_seconds": sum(s for _, s, _ in outcomes),
    }
