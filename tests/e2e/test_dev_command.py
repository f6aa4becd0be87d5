"""`offload dev` (what `make dev` runs) brings the system up and takes it all down again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infra.local.dev import ROOT, free_port
from infra.local.stack import wait_for_endpoint

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
            "infra.ops.cli",
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


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    except OSError:
        return []


def _wait_log(path: Path, dev: subprocess.Popen[bytes], until: str, timeout_s: float = 120) -> str:
    """The log once the regular expression `until` matches in it."""
    deadline = time.monotonic() + timeout_s
    while not re.search(until, text := path.read_text()):
        assert dev.poll() is None, text
        assert time.monotonic() < deadline, f"no {until!r} in:\n{text}"
        time.sleep(0.3)
    return text


def test_dev_on_a_running_endpoint_through_the_proxy_restarts_a_killed_worker(
    tmp_path: Path,
) -> None:
    """One `offload dev` (workers are slow to start here) for three things: an AWS endpoint
    it did not start (provisioned, used, left running), every process's AWS requests through
    the fault proxy, and a worker killed then replaced with one line saying so."""
    moto_port, api_port = free_port(), free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    # In LocalStack's account, not moto's default: `offload dev` must ask the endpoint.
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MOTO_ACCOUNT_ID": "000000000000"},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    path = tmp_path / "dev.log"
    log = path.open("wb")
    dev = None
    try:
        wait_for_endpoint(moto_url, timeout_s=30)
        dev = subprocess.Popen(
            [sys.executable, "-m", "infra.ops.cli", "dev", "--api-port", str(api_port)]
            + ["--aws-endpoint", moto_url, "--faults", "none"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        text = _wait_log(path, dev, "offload is up")
        assert f"local AWS      {moto_url}   (already running" in text
        proxy = re.search(r"fault proxy +(http://\S+)", text)
        assert proxy is not None, text
        children = {pid: _cmdline(pid) for pid in _children_of(dev.pid)}
        assert not any("moto.server" in argv for argv in children.values()), children
        assert len(children) == 3, children  # api, cpu worker, gpu worker
        # Both workers ready; a worker's node name carries its pid: `cpu-<pid>@host ready.`
        text = _wait_log(path, dev, "(?s) ready\\..* ready\\.")
        cpu = re.search(r"cpu-(\d+)@\S+ ready\.", text)
        assert cpu is not None and int(cpu.group(1)) in children, text
        os.killpg(int(cpu.group(1)), signal.SIGKILL)
        said = _wait_log(path, dev, r"offload dev: worker-cpu-1 .*in its place")
        line = re.search(r"offload dev: worker-cpu-1 .*in its place", said)
        assert line is not None
        assert re.fullmatch(
            r"offload dev: worker-cpu-1 was killed by SIGKILL( \(last line: .+\))?; "
            r"started worker-cpu-3 in its place",
            line.group(0),
        ), line.group(0)
        _wait_log(path, dev, "(?s)in its place.* ready\\.")  # the new worker
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/jobs",
            data=json.dumps({"task": "diag.sleep", "payload": {"seconds": 0.1}}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            job_id = json.loads(response.read())["job_id"]
        for _ in range(30):
            job = _get(f"http://127.0.0.1:{api_port}/jobs/{job_id}?wait=2")
            if job["status"] in ("SUCCESS", "FAILURE"):
                break
        assert job["status"] == "SUCCESS", job
        counts = _get(f"{proxy.group(1)}/_faults/counts")
        requests = counts["requests"]
        assert isinstance(requests, dict)
        # The workers' polls (kombu) and the API's and workers' writes all crossed it.
        assert requests.get("sqs:ReceiveMessage", 0) > 0, counts
        assert requests.get("sqs:SendMessage", 0) > 0, counts
        assert requests.get("dynamodb:UpdateItem", 0) > 0, counts
        assert counts["faults"] == {}, counts
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(60) == 0
        assert moto.poll() is None  # not ours to stop
        wait_for_endpoint(moto_url, timeout_s=5)
    finally:
        if dev is not None and dev.poll() is None:
            dev.kill()
            dev.wait(10)
        log.close()
        moto.kill()
        moto.wait(10)
