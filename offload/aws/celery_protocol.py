"""Celery protocol-2 messages for kombu's SQS transport, encoded without importing Celery.

The API sends to the cpu/gpu queues with plain boto3 so that it never imports celery or
kombu (import cost, deployment size); an unmodified Celery worker runs what it sends.
`tests/integration/workers/test_celery_contract.py` compares this encoding with kombu's own.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any

# Celery's "embed" part: no canvas (callbacks, chains, chords) on offload's messages.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def encode(
    *,
    task: str,
    task_id: str,
    kwargs: dict[str, Any],
    routing_key: str,
    time_limit: tuple[float | None, float | None] = (None, None),
) -> str:
    """The SQS message body of a Celery task call `task(**kwargs)` with id `task_id`.

    `time_limit` is Celery's (hard, soft) pair in seconds.
    """
    body = json.dumps([[], kwargs, _EMBED]).encode()
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": list(time_limit),
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": _kwargsrepr(kwargs),
        "origin": f"{os.getpid()}@{socket.gethostname()}",
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def decode(message_body: str) -> dict[str, Any]:
    """The task name, id and kwargs of an SQS message body (for tools and tests)."""
    envelope = json.loads(base64.b64decode(message_body))
    args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    headers = envelope["headers"]
    return {
        "task": headers["task"],
        "id": headers["id"],
        "args": args,
        "kwargs": kwargs,
        "timelimit": headers.get("timelimit"),
        "routing_key": envelope["properties"]["delivery_info"]["routing_key"],
    }


def _kwargsrepr(kwargs: dict[str, Any]) -> str:
    # Payloads may be large or sensitive: worker logs show the keys, not the contents.
    return "{" + ", ".join(f"{key!r}: ..." for key in kwargs) + "}"
