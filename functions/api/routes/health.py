"""`/healthz`: liveness."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers; it touches no AWS service, so it stays cheap and fast."""
    return Health()
