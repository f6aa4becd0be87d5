"""A handler whose internal extension registers, then reports that its init failed."""

from __future__ import annotations

import os
from typing import Any

from tests.lambda_handlers import LambdaContext, call

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension"

_registered = call(
    f"{API}/register", body={"events": ["INVOKE"]}, headers={"Lambda-Extension-Name": "failing"}
)
call(
    f"{API}/init/error",
    body={"errorMessage": "no queue URL", "errorType": "Extension.ConfigMissing"},
    headers={
        "Lambda-Extension-Identifier": _registered[2]["Lambda-Extension-Identifier"],
        "Lambda-Extension-Function-Error-Type": "Extension.ConfigMissing",
    },
)


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return event
