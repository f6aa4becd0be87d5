"""`GET /workers`: the live workers of each queue lane, for operators (the dashboard polls it).

Read from the fleet's table (offload.aws.fleet), which every worker's heartbeat writes: SQS has
no broadcast, so nothing can ask the workers themselves.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from functions.api.schemas import error_responses
from offload.aws.fleet import SILENT_AFTER_BEATS, LaneWorkers, WorkerRegistry
from offload.aws.queues import QUEUE_LANES
from offload.core.model import utcnow
from offload.fastapi import OffloadDep, OperatorDep

router = APIRouter(tags=["operations"], responses=error_responses(403))


class WorkerList(BaseModel):
    """Every queue lane's workers, as their last beats left them at `checked_at`."""

    checked_at: datetime
    silent_after_beats: int = Field(
        description="a worker is silent once its last beat is this many beat intervals old"
    )
    lanes: list[LaneWorkers]


@router.get("/workers", response_model=WorkerList)
async def list_workers(offload: OffloadDep, operator: OperatorDep) -> WorkerList:
    """Per lane: each worker's node, pid, state (live, stopping, silent), last beat and the
    jobs it runs (operators only). One read per lane, however many jobs there are."""
    registry = WorkerRegistry(offload.settings)
    now = utcnow()
    lanes = await asyncio.gather(
        *(asyncio.to_thread(registry.lane, lane, now) for lane in QUEUE_LANES)
    )
    return WorkerList(checked_at=now, silent_after_beats=SILENT_AFTER_BEATS, lanes=list(lanes))
