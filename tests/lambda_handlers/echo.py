"""Echoes the event with what the context says; `raise`, `exit` and `sleep` misbehave on cue."""

from __future__ import annotations

import os
import time
from typing import Any

from tests.lambda_handlers import LambdaContext


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "raise" in event:
        raise ValueError(event["raise"])
    if "exit" in event:
        os._exit(int(event["exit"]))
    time.sleep(float(event.get("sleep", 0)))
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_arn": context.invoked_function_arn,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        "region": os.environ.get("AWS_REGION"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "extra": os.environ.get("EXTRA"),
        "pid": os.getpid(),
    }
