"""`/tasks`: the catalog."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.schemas import TaskList, TaskView
from offload.fastapi import OffloadDep

router = APIRouter(tags=["tasks"])


@router.get("/tasks", response_model=TaskList)
async def list_tasks(offload: OffloadDep) -> TaskList:
    """Every task: its lane, payload JSON schema, and retry and time-limit policy."""
    return TaskList(tasks=[TaskView.model_validate(spec.describe()) for spec in offload.catalog])
