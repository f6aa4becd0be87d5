"""Audit events: a fast, disposable side effect of a request, recorded after the response."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from offload import JobContext, Payload, task
from offload.core.model import isoformat, utcnow


class AuditEvent(Payload):
    """Something that happened, to keep a record of."""

    event: str = Field(
        min_length=1, max_length=100, description="what happened, e.g. document.created"
    )
    subject: str = Field(min_length=1, max_length=200, description="the id of what it happened to")
    data: dict[str, Any] = Field(default_factory=dict)


@task("audit.record", lane="inline", payload=AuditEvent, max_attempts=3, timeout_s=5, backoff_s=0.2)
def record(payload: AuditEvent, ctx: JobContext) -> dict[str, str]:
    """Write the event as JSON under the job's prefix in the results bucket."""
    event = {"at": isoformat(utcnow()), **payload.model_dump(mode="json")}
    uri = ctx.put_artifact("event.json", json.dumps(event).encode(), "application/json")
    return {"uri": uri}
