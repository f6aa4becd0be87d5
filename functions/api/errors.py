"""Every error reaches the client from here, as `{"error": {"type", "message", "details"}}`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from offload.aws.items import InvalidCursor
from offload.errors import (
    AwsUnavailable,
    Forbidden,
    IdempotencyMismatch,
    InvalidPayload,
    JobAlreadyExists,
    JobNotFound,
    JobStateConflict,
    PayloadTooLarge,
    TooManyJobsInFlight,
    Unauthenticated,
    UnknownTask,
)

log = logging.getLogger(__name__)


def error_response(
    status: int,
    type_: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error shape."""
    body = {"error": {"type": type_, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    # FastAPI prefixes body fields with "body"; clients know the field, not our plumbing.
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_detail(e) for e in exc.errors()]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    content_type = request.headers.get("content-type", "")
    body_unread = any(tuple(e["loc"]) == ("body",) for e in exc.errors())
    if body_unread and request.method in ("POST", "PUT", "PATCH") and "json" not in content_type:
        # FastAPI reads a body as JSON only when it is declared so (`curl -d` sends a form).
        message = f"send the body as JSON with Content-Type: application/json ({message})"
    return error_response(422, "invalid_request", message, details)


def _detail(error: Mapping[str, Any]) -> dict[str, str]:
    """A validation error as `{"field", "message"}`; never the input that was refused."""
    if error.get("type") == "json_invalid":
        # Its location is a character offset in the body, not a field.
        reason = (error.get("ctx") or {}).get("error", "not JSON")
        position = error["loc"][-1] if len(error["loc"]) > 1 else 0
        return {"field": "body", "message": f"invalid JSON at character {position}: {reason}"}
    return {"field": _field(tuple(error["loc"])), "message": str(error["msg"])}


async def _offload_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, UnknownTask):
        return error_response(
            422,
            "unknown_task",
            str(exc),
            [{"field": "task", "message": f"unknown task {exc.name!r}"}],
        )
    if isinstance(exc, InvalidPayload):
        return error_response(422, "invalid_payload", str(exc), exc.errors)
    if isinstance(exc, InvalidCursor):
        return error_response(
            422, "invalid_request", f"cursor: {exc}", [{"field": "cursor", "message": str(exc)}]
        )
    if isinstance(exc, PayloadTooLarge):
        return error_response(413, "payload_too_large", str(exc), {"limit_bytes": exc.limit})
    if isinstance(exc, TooManyJobsInFlight):
        return error_response(
            429,
            "too_many_jobs",
            str(exc),
            {"limit": exc.limit},
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    if isinstance(exc, Unauthenticated):
        return error_response(
            401, "unauthenticated", str(exc), headers={"WWW-Authenticate": "Bearer"}
        )
    if isinstance(exc, Forbidden):
        return error_response(403, "forbidden", str(exc))
    if isinstance(exc, JobNotFound):
        return error_response(404, "job_not_found", str(exc))
    if isinstance(exc, IdempotencyMismatch | JobAlreadyExists | JobStateConflict):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, AwsUnavailable):
        log.warning("answering 503: %s", exc)
        return error_response(
            503, "service_unavailable", f"{exc}; retry shortly", headers={"Retry-After": "2"}
        )
    raise exc


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_UNPARSED:
        # FastAPI's answer to a body it cannot decode at all (not UTF-8, say): a 422 that
        # names the body, as for any other invalid JSON.
        detail = {"field": "body", "message": "not JSON text (UTF-8)"}
        return error_response(422, "invalid_request", "body: not JSON text (UTF-8)", [detail])
    headers = exc.headers
    if exc.status_code == 405:
        # Starlette's Allow names the methods of the first route on the path only.
        headers = {**(headers or {}), "Allow": ", ".join(_methods_of(request))}
    kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        exc.status_code, "http_error"
    )
    return error_response(exc.status_code, kind, str(exc.detail), headers=headers)


_FASTAPI_BODY_UNPARSED = "There was an error parsing the body"


def _methods_of(request: Request) -> list[str]:
    """Every method some route serves at the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; it has been logged")


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(RequestValidationError, _request_invalid)
    for kind in (
        UnknownTask,
        InvalidPayload,
        InvalidCursor,
        PayloadTooLarge,
        TooManyJobsInFlight,
        JobNotFound,
        IdempotencyMismatch,
        JobAlreadyExists,
        JobStateConflict,
        AwsUnavailable,
        Unauthenticated,
        Forbidden,
    ):
        app.add_exception_handler(kind, _offload_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
