"""Structured logs: Powertools' JSON formatter, with `job_id` and `request_id` on every line.

Log lines never quote a payload or a token by default. offload itself logs ids, counts and
states, never payloads; what could quote one is an exception's message (a task's
`ValueError(f"bad row {row}")`, a validation error with its input), so the messages of
exceptions other than offload's own are withheld from every line, tracebacks included,
unless `OFFLOAD_LOG_ERROR_MESSAGES=true`. The job record keeps the message for its caller.
AWS SDK loggers never go below INFO: their DEBUG lines carry request bodies and credentials.

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

from offload.errors import OffloadError, PermanentFailure

job_id_var: ContextVar[str | None] = ContextVar("offload_job_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("offload_request_id", default=None)


class ContextFilter(logging.Filter):
    """Adds the current `job_id` and `request_id` to each record (None when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = job_id_var.get()
        record.request_id = request_id_var.get()
        return True


WITHHELD = "(message withheld: set OFFLOAD_LOG_ERROR_MESSAGES=true to log it)"
# Loggers whose DEBUG lines hold request bodies or signed headers.
_WIRE_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "kombu.asynchronous.http")


def _speaks_for_itself(exc: BaseException) -> bool:
    """Whether an exception's message is offload's own words (ids, states, services): those
    of the engine's errors, but not of errors tasks raise (PermanentFailure's kind)."""
    return isinstance(exc, OffloadError) and not isinstance(exc, PermanentFailure)


def withheld(exc: BaseException) -> object:
    """How an exception argument of a log line appears while messages are withheld."""
    return exc if _speaks_for_itself(exc) else f"{type(exc).__name__} {WITHHELD}"


class WithholdErrorMessages(logging.Filter):
    """Replaces exception messages in a record's arguments and traceback (see above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                withheld(arg) if isinstance(arg, BaseException) else arg for arg in record.args
            )
        elif isinstance(record.args, dict) and "exc" in record.args:
            # Celery's task-failure line: the exception's repr, its traceback and the call's
            # arguments as text (the same dict is the record's `data`, which Powertools logs).
            context = record.args
            kind = str(context["exc"]).split("(", 1)[0]
            context["exc"] = f"{kind} {WITHHELD}"
            for key in ("traceback", "args", "kwargs"):
                if key in context:
                    context[key] = "(withheld)"
        if record.exc_info and record.exc_info[1] is not None:
            stand_in = _without_messages(record.exc_info[1], set())
            record.exc_info = (type(stand_in), stand_in, stand_in.__traceback__)
            record.exc_text = None  # a handler may have formatted the original already
        return True


def _without_messages(exc: BaseException, seen: set[int]) -> BaseException:
    """A stand-in for `exc` for formatters: its type's name, its frames, its chain, and no
    message unless offload's own."""
    if _speaks_for_itself(exc):
        return exc
    seen.add(id(exc))
    kind: type[Exception] = type(
        type(exc).__name__, (Exception,), {"__module__": type(exc).__module__}
    )
    stand_in: BaseException = kind(WITHHELD).with_traceback(exc.__traceback__)
    for link in ("__cause__", "__context__"):
        linked = getattr(exc, link)
        if linked is not None and id(linked) not in seen:
            setattr(stand_in, link, _without_messages(linked, seen))
    stand_in.__suppress_context__ = exc.__suppress_context__
    return stand_in


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


def configure_on_lambda(
    service: str, level: str | int = "INFO", *, error_messages: bool = False
) -> None:
    """`configure`, on Lambda only: tests and tools that import a function's module keep
    their own logging."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        configure(service, level, error_messages=error_messages)


def configure(service: str, level: str | int = "INFO", *, error_messages: bool = False) -> None:
    """JSON lines for every logger of the process (idempotent); exception messages withheld
    unless `error_messages` (`Settings.log_error_messages`).

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
        withholding = [f for f in handler.filters if isinstance(f, WithholdErrorMessages)]
        if not error_messages and not withholding:
            handler.addFilter(WithholdErrorMessages())
        for found in withholding if error_messages else ():
            handler.removeFilter(found)
        handler.setFormatter(LambdaPowertoolsFormatter(service=service, utc=True))
    root.setLevel(level)
    for name in _WIRE_LOGGERS:
        wire = logging.getLogger(name)
        if wire.getEffectiveLevel() < logging.INFO:
            wire.setLevel(logging.INFO)
