"""The API fuzzed against its own OpenAPI schema (schemathesis), bounded: no 5xx, every
status code documented, every response matching its schema, invalid requests refused.

Beyond the schema: every 422 names each refused field and the reason, and no answer carries
a traceback. One check is left out: positive_data_acceptance expects every schema-valid request to
succeed, but a schema cannot say which task names exist, which cursors this API issued, or
which idempotency keys were used with another payload: those are schema-valid and rightly
refused (422, 409), each with a body the schema describes.
"""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import positive_data_acceptance

from functions.api.main import create_app
from offload.settings import Settings

# Made at collection, before any AWS is mocked (the app touches AWS only when a request
# needs it; the `settings` fixture mocks and provisions a fresh one for each operation's
# test), and without the shell's OFFLOAD_* settings, as every test runs.
_OWN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
with mock.patch.dict(os.environ, _OWN_ENV, clear=True):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings()))


@schema.parametrize()
@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(
    case: schemathesis.Case[Any], settings: Settings
) -> None:
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    assert response.status_code < 500, response.text
    if response.status_code == 422:
        # Every 422 names each refused field and the reason.
        details = response.json()["error"]["details"]
        assert details, response.text
        assert all(d["field"] and d["message"] for d in details), response.text
    assert "Traceback" not in response.text
