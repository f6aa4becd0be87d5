"""The real system on free ports: moto server, uvicorn and Celery worker processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.dev import LocalSystem, free_port

TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """One local system for the e2e session; every process stops even when tests fail."""
    logs = tmp_path_factory.mktemp("logs")
    local = LocalSystem(aws_port=free_port(), api_port=free_port(), log_dir=logs)
    with local.running():
        yield local


@pytest.fixture
def api(system: LocalSystem) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.api_url, timeout=30) as client:
        yield client


@pytest.fixture
def wait_for(api: httpx.Client, system: LocalSystem) -> Callable[..., dict[str, Any]]:
    """Long-poll a job until `until(job)` holds; fails with the processes' logs otherwise."""

    def wait(
        job_id: str, until: Callable[[dict[str, Any]], bool] | None = None, timeout_s: float = 120
    ) -> dict[str, Any]:
        check = until or (lambda job: job["status"] in TERMINAL)
        deadline = time.monotonic() + timeout_s
        while True:
            job: dict[str, Any] = api.get(f"/jobs/{job_id}", params={"wait": 5}).json()
            if check(job):
                return job
            if time.monotonic() > deadline:
                system.check_alive()
                pytest.fail(f"job never got there: {job}\n{logs_of(system)}")

    return wait


def logs_of(system: LocalSystem) -> str:
    """Every process's recent output, for failure messages."""
    return "\n".join(f"--- {c.name} ---\n{c.output()[-3000:]}" for c in system.children)


def submit(api: httpx.Client, task: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST /jobs, expecting 202."""
    response = api.post("/jobs", json={"task": task, "payload": payload})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def log_dir(system: LocalSystem) -> Path:
    assert system.log_dir is not None
    return system.log_dir
