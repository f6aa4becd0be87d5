"""Structured logs: Powertools' JSON formatter, with `job_id` and `request_id` on every line.

The ids live in context variables: set by the API per request (`request_id`) and by each
attempt of a job (`job_id`, and the id of the request that submitted it). Every logger of
the process, ours, Celery's and the tasks' own, goes through the root handlers configured
here, so no module needs a special logger.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

job_id_var: ContextVar[str | None] = ContextVar("offload_job_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("offload_request_id", default=None)


class ContextFilter(logging.Filter):
    """Adds the current `job_id` and `request_id` to each record (None when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = job_id_var.get()
        record.request_id = request_id_var.get()
        return True


@contextmanager
def log_context(*, job_id: str | None = None, request_id: str | None = None) -> Iterator[None]:
    """Within the block, log lines carry these ids (those given; the others stay as they are)."""
    tokens = []
    if job_id is not None:
        tokens.append((job_id_var, job_id_var.set(job_id)))
    if request_id is not None:
        tokens.append((request_id_var, request_id_var.set(request_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def configure_on_lambda(service: str, level: str | int = "INFO") -> None:
    """`configure`, on Lambda only: tests and tools that import a function's module keep
    their own logging."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        configure(service, level)


def configure(service: str, level: str | int = "INFO") -> None:
    """JSON lines for every logger of the process (idempotent).

    On Lambda the runtime has installed its own root handler: it keeps it (its lines reach
    CloudWatch with the request id) and only changes its format. Elsewhere lines go to stdout.
    """
    # Imported here: only processes that log as JSON pay for it (not the handler's import).
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stdout))
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        handler.setFormatter(LambdaPowertoolsFormatter(service=service, utc=True))
    root.setLevel(level)
