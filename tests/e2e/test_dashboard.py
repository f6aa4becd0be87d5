"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against
the running local system: the live workers of each lane, submit a job and watch it succeed,
replay a dead letter, find a running job on its worker and cancel it. The last screenshot is
kept in docs/ (docs/dashboard.png)."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.dev import LocalSystem
from tests.e2e.conftest import submit

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


@pytest.fixture
def page(system: LocalSystem) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{system.api_url}/dashboard")
            yield page
            assert errors == [], errors  # no script error on the page, ever
        finally:
            browser.close()


def job_row(page: Any, job_id: str) -> Any:
    return page.locator(f'#jobs tbody tr[data-job-id="{job_id}"]')


def worker_row(page: Any, lane: str) -> Any:
    """A live worker's row (other tests of the session may have started more, or killed some)."""
    return page.locator(f'#workers tbody tr[data-lane="{lane}"][data-state="live"]').first


def test_submit_watch_replay_and_cancel_from_the_dashboard(
    page: Any, api: httpx.Client, wait_for: Callable[..., dict[str, Any]], system: LocalSystem
) -> None:
    # The system's workers, one per lane, live: beating from this machine.
    for lane in system.lanes:
        worker_row(page, lane).wait_for()
        worker_id = worker_row(page, lane).get_attribute("data-worker-id")
        assert worker_id.startswith(f"{socket.gethostname()}/"), worker_id
        assert worker_row(page, lane).locator("td").nth(3).text_content().endswith(" s ago")

    # Submit through the form and watch the job reach SUCCESS, live in its detail.
    page.wait_for_selector('#submit-task option[value="diag.sleep"]', state="attached")
    page.select_option("#submit-task", "diag.sleep")
    page.fill("#submit-payload", '{"seconds": 2}')
    page.click("#submit-button")
    page.wait_for_selector("#submit-result:has-text('submitted')")
    job_id = page.text_content("#submit-result").split()[-1]
    page.wait_for_selector(f'#detail[data-job-id="{job_id}"]')
    page.wait_for_selector('#detail-status[data-status="SUCCESS"]')
    assert "slept_s" in page.text_content("#detail-result")
    job_row(page, job_id).locator('[data-status="SUCCESS"]').wait_for()

    # A job that fails for good lands in the cpu lane's dead letters; replay it from the page.
    dead = submit(api, "diag.shout", {"word": "boom", "fail": True})
    assert wait_for(dead["job_id"], timeout_s=60)["status"] == "FAILURE"
    buried_by = time.monotonic() + 30  # the worker buries its message just after the FAILURE
    while not any(m["job_id"] == dead["job_id"] for m in api.get("/dlq/cpu").json()["messages"]):
        assert time.monotonic() < buried_by, "the failed job never reached the dead letters"
        time.sleep(0.5)
    cpu = page.locator('#queues tbody tr[data-lane="cpu"]')
    cpu.locator('[data-action="show-dead-letters"]').click()
    letter = page.locator(f'#dead-letters tbody tr[data-job-id="{dead["job_id"]}"]')
    letter.locator('[data-action="replay-one"]').click()
    page.wait_for_selector("#detail-message:has-text('replayed 1')")
    replayed = wait_for(dead["job_id"], until=lambda job: len(job["history"]) == 1, timeout_s=60)
    assert replayed["history"][0]["error"]["message"].startswith("diag.shout was asked to fail")

    # A running job shows on its worker (from the worker's next beat); from there, its detail,
    # where it is cancelled.
    long = submit(api, "diag.sleep", {"seconds": 60})
    wait_for(long["job_id"], until=lambda job: job["status"] == "STARTED", timeout_s=60)
    running = page.locator(f'#workers [data-running-job="{long["job_id"]}"]')
    running.wait_for()  # within a beat: 20 s
    running.click()
    page.wait_for_selector(f'#detail[data-job-id="{long["job_id"]}"]')
    page.click("#cancel")
    page.wait_for_selector('#detail-status[data-status="REVOKED"]')
    assert wait_for(long["job_id"], timeout_s=30)["status"] == "REVOKED"

    # The status filter narrows the table to what it names.
    page.select_option("#filter-status", "REVOKED")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs tbody tr')].every("
        "tr => tr.dataset.status === 'REVOKED')"
    )
    page.select_option("#filter-status", "")
    job_row(page, job_id).click()  # the screenshot shows a finished job's detail
    page.wait_for_selector(f'#detail[data-job-id="{job_id}"]')
    page.wait_for_selector('#jobs tbody tr[data-status="SUCCESS"]')
    shot = SCREENSHOT.with_suffix(".new.png")
    page.screenshot(path=str(shot), full_page=True)
    shutil.move(shot, SCREENSHOT)
