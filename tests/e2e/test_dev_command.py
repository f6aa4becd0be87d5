"""`offload dev` (what `make dev` runs) brings the system up and takes it all down again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infra.dev import ROOT, free_port

pytestmark = pytest.mark.e2e


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, object] = json.loads(response.read())
        return data


def _children_of(pid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(status.parent.name))
    return found


def test_dev_serves_jobs_and_stops_every_process_on_sigterm(tmp_path: Path) -> None:
    aws_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.cli",
            "dev",
            "--aws-port",
            str(aws_port),
            "--api-port",
            str(api_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 120
        while "offload is up" not in (tmp_path / "dev.log").read_text():
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
            time.sleep(0.3)
        assert _get(f"{api}/healthz") == {"status": "ok"}
        request = urllib.request.Request(
            f"{api}/jobs",
            data=json.dumps({"task": "diag.echo", "payload": {"x": 1}}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            job_id = json.loads(response.read())["job_id"]
        for _ in range(20):  # a long poll answers at each change: wait for the last one
            job = _get(f"{api}/jobs/{job_id}?wait=10")
            if job["status"] in ("SUCCESS", "FAILURE"):
                break
        assert job["status"] == "SUCCESS", job
        children = _children_of(dev.pid)
        assert len(children) == 4  # moto, api, cpu worker, gpu worker
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(60) == 0
        for pid in children:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
        text = (tmp_path / "dev.log").read_text()
        assert "stopped" in text
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait(10)
        log.close()
