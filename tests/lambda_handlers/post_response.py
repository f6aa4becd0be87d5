"""A handler whose internal extension does post-response work after every invocation.

At import (the function's init) it registers for INVOKE, as the API's handler does, and
starts a thread that, for each INVOKE, waits for the handler to be done, works `work_s`
seconds (the event's, default 1) and only then asks for the next event.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from tests.lambda_handlers import LambdaContext, call

NAME = "post-response"
API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension"

seen: list[dict[str, Any]] = []
_handled = threading.Event()
_work_s = 1.0


def _register() -> str:
    status, body, headers = call(
        f"{API}/register", body={"events": ["INVOKE"]}, headers={"Lambda-Extension-Name": NAME}
    )
    if status != 200:
        raise RuntimeError(f"register refused: {status} {body}")
    return headers["Lambda-Extension-Identifier"]


def _run(extension_id: str) -> None:
    while True:
        _, event, _ = call(
            f"{API}/event/next", headers={"Lambda-Extension-Identifier": extension_id}
        )
        seen.append(event)
        # INVOKE reaches the extension as the handler starts, maybe before: wait for it.
        _handled.wait(30)
        _handled.clear()
        time.sleep(_work_s)


threading.Thread(target=_run, args=(_register(),), daemon=True).start()


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _work_s
    _work_s = float(event.get("work_s", 1.0))
    _handled.set()
    return {"request_id": context.aws_request_id, "seen": list(seen)}
