"""How values travel and are kept: JSON of a bounded size, and errors as recorded."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from offload.core.model import JobError
from offload.errors import PermanentFailure

_MAX_ERROR_MESSAGE = 2000


class ResultNotSerializable(PermanentFailure):
    """A task returned something that is not JSON."""


class ResultTooLarge(PermanentFailure):
    """A task returned more than `Settings.max_result_bytes`."""


def encode(value: Any) -> bytes:
    """The JSON of a value as it travels and is counted: compact, non-ASCII escaped (the
    form SQS messages and job records hold it in)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def encoded_result(result: Any, max_bytes: int) -> bytes:
    """A task's return value as JSON of at most `max_bytes`; `ResultNotSerializable` or
    `ResultTooLarge` otherwise."""
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        # NaN and Infinity are not JSON: stored, they would come back as null.
        body = encode(result)
    except (TypeError, ValueError) as exc:
        raise ResultNotSerializable(
            f"result of type {type(result).__name__} is not JSON-serializable: {exc}"
        ) from None
    if len(body) > max_bytes:
        raise ResultTooLarge(f"result is {len(body)} bytes as JSON; the limit is {max_bytes}")
    return body


def to_json(result: Any, max_bytes: int) -> Any:
    """A task's return value as JSON-compatible data of at most `max_bytes` when encoded."""
    return json.loads(encoded_result(result, max_bytes))


def describe_error(exc: BaseException) -> JobError:
    """The recorded form of an exception: its type name and message, never a traceback."""
    message = str(exc) or repr(exc)
    return JobError(type=type(exc).__name__, message=message[:_MAX_ERROR_MESSAGE])
