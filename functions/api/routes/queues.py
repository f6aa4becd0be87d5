"""`GET /queues`: each queue lane's backlog, for operators (the dashboard polls it)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel

from functions.api.schemas import error_responses
from offload.aws.queue_depths import LaneDepth, lane_depth
from offload.aws.queues import QUEUE_LANES
from offload.fastapi import OffloadDep, OperatorDep

router = APIRouter(tags=["operations"], responses=error_responses(403))


class QueueList(BaseModel):
    """Every queue lane's depths, as SQS and the job store see them now."""

    queues: list[LaneDepth]


@router.get("/queues", response_model=QueueList)
async def list_queues(offload: OffloadDep, operator: OperatorDep) -> QueueList:
    """Per lane: messages waiting, in flight, delayed, dead letters, and the age of the
    oldest job not yet started (operators only)."""
    depths = await asyncio.gather(
        *(
            asyncio.to_thread(lane_depth, offload.settings, offload.store, lane)
            for lane in QUEUE_LANES
        )
    )
    return QueueList(queues=list(depths))
