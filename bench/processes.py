"""The processes a benchmark starts (the local system, a baseline app, a broker), each
stopped with its whole process group when the benchmark ends, fails or is interrupted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.local.dev import ROOT, LocalSystem, free_port, signal_group


class NotServing(RuntimeError):
    """A process the benchmark started exited, or never answered."""


def interrupt_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so that every `with` below stops what it started."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    grace_s: float = 5.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running in a session of its own (its children too), its output in `log_path`;
    stopped on exit, killed if it has not stopped `grace_s` after SIGTERM."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process, grace_s)


def stop(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left of it after `grace_s`."""
    signal_group(process, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace_s)
    # A prefork pool's children share the group: none may outlive its parent.
    signal_group(process, signal.SIGKILL)
    process.wait(10)


def wait_http(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    """Return once `url` answers 200; `NotServing` if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise NotServing(f"{url}: the process exited with {process.returncode}\n{tail}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            raise NotServing(f"{url} did not answer within {timeout_s:g} s")
        time.sleep(0.1)


@contextlib.contextmanager
def local_system(
    log_dir: Path, aws_port: int | None = None, **kwargs: Any
) -> Iterator[LocalSystem]:
    """offload's local system (`infra.local.dev.LocalSystem`) on free ports, its workers ready."""
    system = LocalSystem(
        aws_port=aws_port or free_port(), api_port=free_port(), log_dir=log_dir, **kwargs
    )
    with system.running() as started:
        yield started
