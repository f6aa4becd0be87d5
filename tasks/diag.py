"""Diagnostic tasks: for smoke tests of a deployment and for offload's own tests."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offload import Batch, JobContext, Payload, task
from offload.errors import AwsUnavailable


class Echo(BaseModel):
    """Anything: echoed back as the result."""

    model_config = ConfigDict(extra="allow")


class Nap(Payload):
    """How long an inline nap lasts."""

    seconds: float = Field(ge=0, le=10, description="how long to sleep, at most 10 s")
    crash: bool = Field(
        default=False, description="raise once the nap is over (how tests crash an inline task)"
    )


class Sleep(Payload):
    """How long a cpu worker sleeps."""

    seconds: float = Field(ge=0, le=600, description="how long to sleep, at most 10 minutes")
    report: bool = Field(
        default=True,
        description="report progress each second (a task that never reports "
        "can only be stopped by its worker's heartbeat)",
    )
    mark: bool = Field(
        default=False,
        description="record each attempt's start and finish under the job's S3 prefix "
        "(marks/<attempt>-started, marks/<attempt>-finished, each holding the pid of the "
        "worker whose pool ran it): how fault tests count runs",
    )


class Flaky(Payload):
    """How many attempts fail before one succeeds."""

    fail_times: int = Field(
        ge=0, le=20, description="attempts that fail before one succeeds (across replays)"
    )
    note: str = Field(
        default="",
        max_length=200,
        description="said in each planned failure's message (tests check that logs withhold it)",
    )


@task("diag.echo", lane="inline", payload=Echo, max_attempts=1, timeout_s=5)
def echo(payload: Echo, ctx: JobContext) -> dict[str, Any]:
    """Return the payload: the shortest round trip through the inline lane."""
    return payload.model_dump(mode="json")


@task("diag.nap", lane="inline", payload=Nap, max_attempts=1, timeout_s=12)
def nap(payload: Nap, ctx: JobContext) -> dict[str, float]:
    """Sleep in the API process after the response (at most 10 s)."""
    time.sleep(payload.seconds)
    if payload.crash:
        raise RuntimeError(f"diag.nap crashed as asked after {payload.seconds:g} s")
    return {"slept_s": payload.seconds}


@task("diag.sleep", lane="cpu", payload=Sleep, max_attempts=3, timeout_s=660)
def sleep(payload: Sleep, ctx: JobContext) -> dict[str, float]:
    """Sleep on a cpu worker, reporting progress each second."""
    started = time.monotonic()
    if payload.mark:
        _mark(ctx, "started")
    whole = int(payload.seconds)
    for second in range(whole):
        if payload.report:
            ctx.progress(
                100 * second / max(payload.seconds, 1e-9), f"{second} of {payload.seconds:g} s"
            )
        time.sleep(1)
    time.sleep(payload.seconds - whole)
    ctx.progress(100, "done")
    if payload.mark:
        _mark(ctx, "finished")
    return {"slept_s": round(time.monotonic() - started, 3)}


# Tries of a mark through an S3 outage: a finished body must not fail for want of its mark
# (fault tests would count its next attempt as a second completion).
_MARK_TRIES = 6


def _mark(ctx: JobContext, what: str) -> None:
    for pause_s in [0.2 * 2**n for n in range(_MARK_TRIES - 1)] + [None]:
        try:
            # The pool process's parent: the worker a fault test may have killed.
            worker = str(os.getppid()).encode()
            ctx.put_artifact(f"marks/{ctx.attempt}-{what}", worker, "text/plain")
            return
        except AwsUnavailable:
            if pause_s is None:
                raise
            time.sleep(pause_s)


class Blob(Payload):
    """Data of any size (up to the payload limit), to digest and perhaps send back."""

    data: str = Field(description="any text")
    echo: bool = Field(default=False, description="return the data too, not only its digest")


@task("diag.digest", lane="cpu", payload=Blob, max_attempts=3, timeout_s=60)
def digest(payload: Blob, ctx: JobContext) -> dict[str, Any]:
    """Size and SHA-256 of the data, on a cpu worker: how tests send large payloads (and,
    with `echo`, large results) through the whole system."""
    data = payload.data.encode()
    result: dict[str, Any] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if payload.echo:
        result["data"] = payload.data
    return result


class Hang(Payload):
    """How a task that overruns its time limit behaves."""

    ignore_soft_limit: bool = Field(
        default=False,
        description="swallow the soft time limit's exception, so only the hard limit stops it",
    )


@task("diag.hang", lane="cpu", payload=Hang, max_attempts=2, timeout_s=2, backoff_s=0)
def hang(payload: Hang, ctx: JobContext) -> None:
    """Run past the 2 s time limit: shows soft and hard limits recorded and retried."""
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        try:
            time.sleep(0.1)
        except Exception as exc:
            # billiard's SoftTimeLimitExceeded; named, not imported: the API imports this module
            if not (payload.ignore_soft_limit and type(exc).__name__ == "SoftTimeLimitExceeded"):
                raise


class FlakyError(RuntimeError):
    """The planned failure of `diag.flaky`."""


@task("diag.flaky", lane="cpu", payload=Flaky, max_attempts=5, timeout_s=30, backoff_s=1)
def flaky(payload: Flaky, ctx: JobContext) -> dict[str, int]:
    """Fail the first `fail_times` attempts, then succeed: shows retries and backoff.

    Attempts count across replays, so a job that failed for good succeeds once replayed."""
    made = ctx.previous_attempts + ctx.attempt
    if made <= payload.fail_times:
        said = f": {payload.note}" if payload.note else ""
        raise FlakyError(f"planned failure {made} of {payload.fail_times}{said}")
    return {"attempt": ctx.attempt}


class Shout(Payload):
    """A word to upper-case in a batch."""

    word: str = Field(min_length=1, max_length=100)
    fail: bool = Field(default=False, description="break the whole batch call (how tests do)")


@task(
    "diag.shout",
    lane="cpu",
    payload=Shout,
    max_attempts=1,
    timeout_s=30,
    batch=Batch(max_size=8, max_wait_ms=300),
)
def shout(payloads: list[Shout], ctxs: list[JobContext]) -> list[dict[str, Any]]:
    """Upper-case words, gathered in batches on a cpu worker (shows batching at work)."""
    failing = [p.word for p in payloads if p.fail]
    if failing:
        raise ValueError(f"diag.shout was asked to fail on {failing}")
    return [
        {"word": p.word.upper(), "batch_size": len(payloads), "pid": os.getpid()} for p in payloads
    ]
