"""Webhooks: a signed JSON POST to a URL the caller names, after the response, with retries.

The receiver checks `X-Offload-Signature` (`t=<unix time>,v1=<hex>`: HMAC-SHA256 with the
shared `OFFLOAD_WEBHOOK_SECRET` over `<t>.<body>`), refuses old timestamps, and drops
repeats by `X-Offload-Delivery` (the job id: the same on every attempt). See `signature`.
Private, loopback and link-local destinations are refused unless
`OFFLOAD_WEBHOOK_ALLOWED_NETWORKS` names them (offload.outbound).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from offload import JobContext, Payload, PermanentFailure, task
from offload.core.model import isoformat, utcnow
from offload.outbound import DestinationUnreachable, post_json

SIGNATURE_HEADER = "X-Offload-Signature"
DELIVERY_HEADER = "X-Offload-Delivery"
# Statuses worth another attempt: the receiver is busy, overloaded or briefly down.
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookFailed(Exception):
    """The receiver could not take it now (5xx, 429, a timeout): the next attempt may."""


class WebhookRefused(PermanentFailure):
    """The receiver refused it (4xx, a redirect) or it cannot be sent as configured."""


class Webhook(Payload):
    """A JSON event to POST to a URL."""

    url: str = Field(min_length=1, max_length=2048, description="http(s) URL to POST to")
    event: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="what happened, e.g. order.paid (letters, digits and . _ : -)",
    )
    data: dict[str, Any] = Field(default_factory=dict, description="the event's JSON body")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        # Checked here too, so that a wrong URL is a 422 at submit, not a failed job later.
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        if any(char.isspace() or not char.isprintable() for char in url):
            raise ValueError("must not contain spaces or control characters (percent-encode)")
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (parsing it is the check)
        except ValueError:
            raise ValueError("has an invalid port") from None
        if not parts.hostname:
            raise ValueError("must name a host")
        return url


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Offload-Signature` value of `body` sent at `timestamp` (receivers recompute it
    and compare with `hmac.compare_digest`)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@task(
    "notify.webhook",
    lane="inline",
    payload=Webhook,
    max_attempts=5,
    timeout_s=15,
    backoff_s=0.5,
    backoff_max_s=8,
)
def webhook(payload: Webhook, ctx: JobContext) -> dict[str, Any]:
    """POST the event as signed JSON to the URL; retried while the receiver is unavailable."""
    settings = ctx.settings
    if not settings.webhook_secret:
        raise WebhookRefused("OFFLOAD_WEBHOOK_SECRET is not set: webhooks are sent signed only")
    body = json.dumps(
        {
            "id": ctx.job_id,
            "event": payload.event,
            "data": payload.data,
            "sent_at": isoformat(utcnow()),
        },
        separators=(",", ":"),
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "offload-webhook/1",
        DELIVERY_HEADER: ctx.job_id,
        "X-Offload-Event": payload.event,
        SIGNATURE_HEADER: signature(settings.webhook_secret, int(time.time()), body),
    }
    try:
        answer = post_json(
            payload.url,
            body,
            headers,
            timeout_s=settings.webhook_timeout_s,
            allowed=settings.webhook_networks(),
        )
    except (DestinationUnreachable, OSError) as exc:
        raise WebhookFailed(f"{type(exc).__name__}: {exc}") from None
    if 200 <= answer.status < 300:
        return {"status": answer.status, "attempt": ctx.attempt}
    said = f"the receiver answered {answer.status}: {answer.excerpt[:300]}"
    if answer.status in _TRANSIENT_STATUSES:
        raise WebhookFailed(said)
    if 300 <= answer.status < 400:
        raise WebhookRefused(f"{said} (redirects are not followed: post to the final URL)")
    raise WebhookRefused(said)
