"""Tries to register extensions the ways Lambda refuses: with SHUTDOWN at init (an internal
extension cannot have it), and at all once init is over (registration is closed)."""

from __future__ import annotations

import os
from typing import Any

from tests.lambda_handlers import LambdaContext, call

REGISTER = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension/register"


def _register(name: str, events: list[str]) -> dict[str, Any]:
    status, body, _ = call(
        REGISTER, body={"events": events}, headers={"Lambda-Extension-Name": name}
    )
    return {"status": status, **body}


AT_INIT = _register("wants-shutdown", ["INVOKE", "SHUTDOWN"])


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {"at_init": AT_INIT, "after_init": _register("too-late", ["INVOKE"])}
