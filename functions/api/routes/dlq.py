"""`/dlq/{lane}`: the dead letters of a queue lane, and their replay."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from functions.api.schemas import error_responses
from offload.aws.dlq import DeadLetter
from offload.fastapi import OffloadDep, OperatorDep
from offload.settings import QueueLane

router = APIRouter(tags=["dead letters"], responses=error_responses(403))


class DeadLetterList(BaseModel):
    """`GET /dlq/{lane}`: `count` is SQS's approximate total; `messages` a sample of it."""

    lane: QueueLane
    count: int
    messages: list[DeadLetter]


class ReplayRequest(BaseModel):
    """Which dead letters to replay: the given jobs, or all when `job_ids` is absent."""

    model_config = ConfigDict(extra="forbid")

    job_ids: list[str] | None = Field(default=None, max_length=1000)


class ReplayResult(BaseModel):
    """What the replay did: the ids sent again, and why the others were not."""

    replayed: list[str]
    skipped: dict[str, str]


@router.get("/dlq/{lane}", response_model=DeadLetterList)
async def list_dead_letters(
    lane: QueueLane, offload: OffloadDep, operator: OperatorDep
) -> DeadLetterList:
    """The lane's dead letters with the reason each is there, oldest first (operators only)."""
    messages = await asyncio.to_thread(offload.dead_letters.peek, lane)
    count = await asyncio.to_thread(offload.dead_letters.count, lane)
    return DeadLetterList(lane=lane, count=max(count, len(messages)), messages=messages)


@router.post("/dlq/{lane}/replay", response_model=ReplayResult)
async def replay_dead_letters(
    lane: QueueLane,
    offload: OffloadDep,
    operator: OperatorDep,
    body: ReplayRequest | None = None,
) -> ReplayResult:
    """Send dead letters back to work (operators only); a failed job returns to PENDING, its
    run kept in `history`."""
    wanted = set(body.job_ids) if body and body.job_ids is not None else None
    report = await asyncio.to_thread(offload.dead_letters.replay, lane, wanted)
    return ReplayResult(replayed=report.replayed, skipped=report.skipped)
