"""offload's FastAPI app on Lambda: `handler = lambda_handler(app)`.

The app is built once per execution environment (at import, during init); Mangum runs with
its lifespan off, since it would otherwise start and stop the app on every invocation.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from offload.aws_lambda.extension import InternalExtension
from offload.aws_lambda.inline import LambdaInline
from offload.observability import logs
from offload.web.integration import Offload, serving

log = logging.getLogger(__name__)

EXTENSION_NAME = "offload-inline"

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_handler(app: FastAPI) -> LambdaHandler:
    """A Lambda handler for `app` (which has `Offload` installed) whose inline jobs run after
    the response. Call it at import of the handler's module: under a Lambda runtime it
    registers the internal extension, which Lambda only accepts during init."""
    offload: Offload = app.state.offload
    logs.configure_on_lambda(
        "offload-api",
        offload.settings.log_level,
        error_messages=offload.settings.log_error_messages,
    )
    # A runner of its own: its slots belong to the loop thread, not to uvicorn's loop.
    inline = LambdaInline(offload.new_inline_runner, offload.settings.lambda_deadline_margin_s)
    offload.lambda_inline = inline
    runtime_api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if runtime_api:

        def on_invoke(event: Mapping[str, Any]) -> None:
            # deadlineMs is wall-clock epoch milliseconds; waits below use the monotonic clock.
            remaining_s = int(event["deadlineMs"]) / 1000 - time.time()
            inline.settle(str(event["requestId"]), time.monotonic() + remaining_s)

        InternalExtension(runtime_api, EXTENSION_NAME, on_invoke).register()
    mangum = Mangum(app, lifespan="off")

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        serving_token = serving.set(inline)  # Mangum's task copies this context
        try:
            response: dict[str, Any] = mangum(event, context)
            return response
        finally:
            serving.reset(serving_token)
            try:
                # Even when the app failed: jobs it submitted must run (or spill).
                remaining = getattr(context, "get_remaining_time_in_millis", None)
                inline.release(remaining() / 1000 if remaining else None)
            except Exception:
                log.exception("the inline jobs of this invocation could not be started")
            finally:
                request_id = getattr(context, "aws_request_id", None)
                if request_id:  # else the extension would hold the invocation to its deadline
                    inline.handler_done(request_id)

    return handler
