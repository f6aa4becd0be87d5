from __future__ import annotations

import base64
import json

from offload.aws import celery_protocol


def test_round_trip_keeps_task_id_kwargs_and_route() -> None:
    body = celery_protocol.encode(
        task="diag.sleep",
        task_id="j-1",
        kwargs={"payload": {"seconds": 1}, "attempt": 2},
        routing_key="cpu",
        time_limit=(90.0, 60.0),
    )
    decoded = celery_protocol.decode(body)
    assert decoded == {
        "task": "diag.sleep",
        "id": "j-1",
        "args": [],
        "kwargs": {"payload": {"seconds": 1}, "attempt": 2},
        "timelimit": [90.0, 60.0],
        "routing_key": "cpu",
    }


def test_worker_logs_do_not_carry_the_payload() -> None:
    body = celery_protocol.encode(
        task="t", task_id="j", kwargs={"payload": {"password": "s3cr3t"}}, routing_key="cpu"
    )
    envelope = json.loads(base64.b64decode(body))
    assert "s3cr3t" not in envelope["headers"]["kwargsrepr"]
