"""offload's own InternalExtension with an `on_invoke` that fails on every other event.

The event loop must survive a failing `on_invoke` and keep asking for events: otherwise
every later invocation would be held to its timeout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from offload.aws_lambda.extension import InternalExtension
from tests.lambda_handlers import LambdaContext

handled: list[str] = []


def on_invoke(event: Mapping[str, Any]) -> None:
    handled.append(str(event["requestId"]))
    if len(handled) % 2 == 1:
        raise RuntimeError("on_invoke failed, as this test asks")


InternalExtension(os.environ["AWS_LAMBDA_RUNTIME_API"], "flaky", on_invoke).register()


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {"request_id": context.aws_request_id, "events_seen": len(handled)}
