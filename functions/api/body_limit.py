"""Request bodies larger than any job could take are refused before they are read whole.

The exact limit is the payload's (`Settings.max_payload_bytes`, checked on its compact JSON
by `Jobs.submit`); this one only keeps a client from filling the API's memory, so it leaves
room for the envelope and for JSON written with whitespace.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.api.errors import error_response

# Room around the payload: `task`, `idempotency_key`, and indentation.
_ENVELOPE_BYTES = 64 * 1024


def body_limit_for(max_payload_bytes: int) -> int:
    """The largest request body read for payloads of at most `max_payload_bytes`."""
    return 2 * max_payload_bytes + _ENVELOPE_BYTES


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once by its Content-Length, or as soon as the
    bytes read exceed it (a chunked body has no length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = error_response(
                413, "payload_too_large", self._message(), {"limit_bytes": self.max_bytes}
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised into the route's body read; the API's handlers answer 413.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body is over {self.max_bytes} bytes, more than any job takes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses it itself
    return None
