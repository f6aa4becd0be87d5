"""Every request gets an id: in its log lines, on its jobs, and in its `X-Request-Id` header.

On Lambda it is the invocation's request id (the one in the function's CloudWatch lines);
elsewhere the client's `X-Request-Id` when it is sane, or a new one.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload.observability.logs import request_id_var

HEADER = b"x-request-id"
# A client's id is echoed into logs and headers: only short, plain ones are taken.
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The id of the request in `scope`."""
    context: Any = scope.get("aws.context")
    lambda_id = getattr(context, "aws_request_id", None)
    if isinstance(lambda_id, str) and lambda_id:
        return str(lambda_id)
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            given: str = value.decode("latin-1")
            if _SANE.fullmatch(given):
                return given
    return str(uuid.uuid4())


class RequestIdMiddleware:
    """Sets the request id for the request's whole handling and answers with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
