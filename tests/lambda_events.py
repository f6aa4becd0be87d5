"""API Gateway HTTP API (payload 2.0) events for the API's Lambda handler, and a fake context.

Events start from AWS's own sample (`tests/fixtures/apigw/`, from `sam local generate-event`)
and vary only what a test names, keeping the fields API Gateway derives from each other
(rawPath and requestContext.http.path, rawQueryString and queryStringParameters, ...) in step.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

FIXTURES = Path(__file__).parent / "fixtures" / "apigw"

# template.yaml's one route: every method and path reaches the API function.
ROUTE_KEY = "ANY /{proxy+}"


class _NoBody:
    """The `json_body` default: no JSON body (None would be JSON's null)."""


NO_BODY = _NoBody()

Query = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]


def sample_event(name: str = "http-api-proxy") -> dict[str, Any]:
    """A fresh copy of a stored sample event (`tests/fixtures/apigw/<name>.json`)."""
    event: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return event


def jwt_claims(sub: str, **extra: Any) -> dict[str, Any]:
    """Claims as API Gateway's JWT authorizer passes them on, for subject `sub`."""
    now = int(time.time())
    return {
        "sub": sub,
        "iss": "https://issuer.example.com/",
        "aud": "offload",
        "iat": str(now),
        "exp": str(now + 3600),
        **extra,
    }


def http_event(
    method: str = "GET",
    path: str = "/",
    *,
    query: Query | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: Sequence[str] | None = None,
    json_body: Any = NO_BODY,
    body: str | bytes | None = None,
    base64_encoded: bool = False,
    claims: Mapping[str, Any] | None = None,
    scopes: Sequence[str] | None = None,
    route_key: str = ROUTE_KEY,
    request_id: str | None = None,
    at: datetime | None = None,
    sample: str = "http-api-proxy",
) -> dict[str, Any]:
    """An HTTP API v2 event for `method path`, made from the sample `sample`.

    :param query: the query string, as a mapping (a list value repeats the key) or pairs.
    :param headers: request headers; names are lowercased, as API Gateway passes them.
    :param cookies: the `cookies` list (`name=value` each); None leaves none.
    :param json_body: a body to send as JSON (with its content-type), unless `body` is given.
    :param body: a raw body, sent as it is (for bodies that are not valid JSON).
    :param base64_encoded: send the body base64-encoded, with `isBase64Encoded`.
    :param claims: the JWT authorizer's verified claims; None: no authorizer at all.
    :param scopes: the token's scopes, when the route asks for some.
    :param route_key: the matched route (`ANY /{proxy+}` sets `pathParameters.proxy`).
    :param request_id: API Gateway's request id; a fresh one by default.
    :param at: when API Gateway received the request; now by default.
    """
    event = sample_event(sample)
    context: dict[str, Any] = event["requestContext"]
    received = at or datetime.now(UTC)

    event["routeKey"] = context["routeKey"] = route_key
    event["rawPath"] = context["http"]["path"] = path
    context["http"]["method"] = method.upper()
    context["requestId"] = request_id or str(uuid.uuid4())
    context["time"] = received.strftime("%d/%b/%Y:%H:%M:%S +0000")
    context["timeEpoch"] = int(received.timestamp() * 1000)
    if route_key.endswith("/{proxy+}"):
        event["pathParameters"] = {"proxy": path.lstrip("/")}
    else:
        event.pop("pathParameters", None)

    _set_query(event, query)
    _set_body(event, json_body, body, base64_encoded)
    if cookies is None:
        event.pop("cookies", None)
    else:
        event["cookies"] = list(cookies)
    if claims is None:
        context.pop("authorizer", None)
    else:
        context["authorizer"] = {
            "jwt": {"claims": dict(claims), "scopes": None if scopes is None else list(scopes)}
        }

    # What API Gateway adds to every request, then the sample's own and the test's headers.
    merged = {
        "host": context["domainName"],
        "user-agent": context["http"]["userAgent"],
        "x-forwarded-for": context["http"]["sourceIp"].split("/")[0],
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if body is None and not isinstance(json_body, _NoBody):
        merged["content-type"] = "application/json"
    for name, value in (*event.get("headers", {}).items(), *(headers or {}).items()):
        merged[name.lower()] = value
    if "body" in event:
        merged["content-length"] = str(len(_raw_body(event)))
    event["headers"] = merged
    return event


def _set_query(event: dict[str, Any], query: Query | None) -> None:
    pairs: list[tuple[str, str]] = []
    if isinstance(query, Mapping):
        for key, value in query.items():
            values = [value] if isinstance(value, str) else list(value)
            pairs.extend((key, v) for v in values)
    elif query is not None:
        pairs = list(query)
    event["rawQueryString"] = urlencode(pairs, quote_via=quote)
    if pairs:
        # API Gateway joins a repeated parameter's values with commas.
        joined: dict[str, str] = {}
        for key, value in pairs:
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        event["queryStringParameters"] = joined
    else:
        event.pop("queryStringParameters", None)


def _set_body(event: dict[str, Any], json_body: Any, body: str | bytes | None, b64: bool) -> None:
    if body is None and not isinstance(json_body, _NoBody):
        body = json.dumps(json_body)
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
        return
    raw = body.encode() if isinstance(body, str) else body
    event["body"] = base64.b64encode(raw).decode() if b64 else raw.decode()
    event["isBase64Encoded"] = b64


def _raw_body(event: Mapping[str, Any]) -> bytes:
    body: str = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def response_json(response: Mapping[str, Any]) -> Any:
    """The JSON body of a Lambda proxy response (decoding it if `isBase64Encoded`)."""
    return json.loads(_raw_body(response))


@dataclass
class FakeContext:
    """The parts of Lambda's context object a handler reads; time runs from creation."""

    timeout_s: float = 30.0  # the ApiFunction's Timeout in template.yaml
    function_name: str = "offload-ApiFunction"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/offload-ApiFunction"
    log_stream_name: str = "2020/03/12/[$LATEST]0123456789abcdef"
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN, as invoked (no alias)."""
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop this invocation."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))
