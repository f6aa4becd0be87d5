"""`GET /dashboard`: the operator's web page, and its script and style sheet.

Static files: the page carries no data. Its script calls the API as any client does (with
a bearer token the operator pastes in, when the API needs one), so it can do nothing its
caller may not.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(tags=["dashboard"], include_in_schema=False)

_FILES = Path(__file__).resolve().parent.parent / "dashboard"
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# Only its own script and styles, and calls to this API.
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def _read(name: str) -> bytes:
    # Read on first request, not at import: the API's cold start does not pay for it.
    return (_FILES / name).read_bytes()


def _file(name: str) -> Response:
    return Response(
        _read(name),
        media_type=_TYPES[name],
        headers={"Content-Security-Policy": _POLICY, "Cache-Control": "no-cache"},
    )


@router.get("/dashboard")
async def dashboard() -> Response:
    """The page."""
    return _file("index.html")


@router.get("/dashboard/{name}")
async def dashboard_file(name: str) -> Response:
    """Its script and style sheet."""
    if name not in _TYPES or name == "index.html":
        raise HTTPException(status_code=404, detail=f"no dashboard file {name!r}")
    return _file(name)
