"""offload's own encoding of Celery messages must match what kombu itself sends."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from offload.aws import celery_protocol
from offload.settings import Settings
from workers.app import create_app


def envelope(body: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(body))
    return data


def test_our_message_has_the_shape_of_kombus(
    settings: Settings, drain: Callable[[str], list[str]]
) -> None:
    app = create_app(settings)
    kwargs = {"payload": {"seconds": 1.5}, "attempt": 1}
    app.send_task(
        "diag.sleep",
        kwargs=kwargs,
        task_id="job-1",
        queue="cpu",
        time_limit=690.0,
        soft_time_limit=660.0,
    )
    (theirs,) = drain("cpu")
    ours = celery_protocol.encode(
        task="diag.sleep",
        task_id="job-1",
        kwargs=kwargs,
        routing_key="cpu",
        time_limit=(690.0, 660.0),
    )
    a, b = envelope(theirs), envelope(ours)
    assert set(a) == set(b)
    assert set(a["headers"]) <= set(b["headers"])
    for name in (
        "lang",
        "task",
        "id",
        "root_id",
        "parent_id",
        "group",
        "retries",
        "eta",
        "expires",
        "timelimit",
    ):
        assert a["headers"][name] == b["headers"][name], name
    assert set(a["properties"]) == set(b["properties"])
    for name in ("correlation_id", "delivery_mode", "delivery_info", "priority", "body_encoding"):
        assert a["properties"][name] == b["properties"][name], name
    assert (a["content-type"], a["content-encoding"]) == (b["content-type"], b["content-encoding"])
    assert json.loads(base64.b64decode(a["body"])) == json.loads(base64.b64decode(b["body"]))
    assert celery_protocol.decode(theirs) == celery_protocol.decode(ours)
