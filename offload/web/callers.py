"""Who is asking: the caller that owns a request's jobs (Settings.auth says how to tell)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from offload.errors import Forbidden, Unauthenticated
from offload.settings import Settings

# With auth "none" (make dev) every request is this caller.
LOCAL_CALLER = "local"


class Callers:
    """Resolves a request's caller from its headers and, on Lambda, its API Gateway event.

    :param settings: `auth_mode` and, for tokens, `api_tokens`.
    """

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth_mode
        self._tokens = settings.token_callers() if self.mode == "tokens" else {}
        self._operators = settings.operator_callers()

    def caller(self, headers: Mapping[str, str], aws_event: Mapping[str, Any] | None) -> str:
        """The caller; `Unauthenticated` when the mode needs an identity the request lacks."""
        if self.mode == "none":
            return LOCAL_CALLER
        if self.mode == "tokens":
            return self._token_caller(headers.get("authorization"))
        return _jwt_subject(aws_event)

    def check_operator(self, caller: str) -> None:
        """`Forbidden` unless `caller` may work the dead-letter queues."""
        if self.mode != "none" and caller not in self._operators:
            raise Forbidden(f"caller {caller!r} is not an operator (OFFLOAD_OPERATORS)")

    def _token_caller(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send Authorization: Bearer <token>")
        found = None
        for known, caller in self._tokens.items():
            # Compare with every token, in constant time: no early exit to time.
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                found = caller
        if found is None:
            raise Unauthenticated("the bearer token is not known")
        return found


def _jwt_subject(aws_event: Mapping[str, Any] | None) -> str:
    """`sub` of the claims API Gateway's JWT authorizer verified (HTTP API, payload 2.0).

    API Gateway has checked the signature, issuer, audience and expiry before the function
    runs; a request that reaches us without claims came by another way and is refused."""
    claims: Any = aws_event
    for key in ("requestContext", "authorizer", "jwt", "claims"):
        claims = claims.get(key) if isinstance(claims, Mapping) else None
    subject = claims.get("sub") if isinstance(claims, Mapping) else None
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the request carries no verified JWT subject (sub claim)")
    return subject
