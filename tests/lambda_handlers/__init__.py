"""Tiny Lambda handler modules that tests run under awslambdaric (`infra.local.lambda_emulator`)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Protocol


class LambdaContext(Protocol):
    """What the handlers here read from awslambdaric's context."""

    aws_request_id: str
    invoked_function_arn: str
    function_name: str
    function_version: str
    memory_limit_in_mb: str

    def get_remaining_time_in_millis(self) -> int: ...


def call(
    url: str, *, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One Lambda API call: status, JSON body and headers, error statuses included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        # No timeout: an extension's next blocks until the next event, however long.
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)
