"""Which AWS failures are outages (`AwsUnavailable`: keep the message, try later) and which
are errors of the request itself (surfaced as they are)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from offload.aws.clients import unavailable_as
from offload.errors import AwsUnavailable


def client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "UpdateItem")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exc",
    [
        client_error("ThrottlingException", 400),
        client_error("ProvisionedThroughputExceededException", 400),
        client_error("503", 503),  # a proxy's bare 503: botocore names it by its status
        client_error("BadGateway", 502),
        client_error("SlowDown", 429),
        ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
    ids=["throttle", "throughput", "bare-503", "502", "429", "dropped", "read-timeout"],
)
def test_outages_are_unavailable(exc: Exception) -> None:
    with pytest.raises(AwsUnavailable), unavailable_as("DynamoDB"):
        raise exc


@pytest.mark.parametrize(
    "exc",
    [client_error("ValidationException", 400), client_error("AccessDeniedException", 400)],
    ids=["validation", "access-denied"],
)
def test_errors_of_the_request_pass_as_they_are(exc: Exception) -> None:
    with pytest.raises(ClientError), unavailable_as("DynamoDB"):
        raise exc
