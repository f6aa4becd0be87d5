"""`functions.scheduler.main.handler`: the sagemaker lane's sweep, on a schedule.

SNS and SQS deliver SageMaker's notifications at least once, but a notification can still
be lost (a topic policy changed, a queue purged, a function failing past its DLQ). Every few
minutes this resolves the sagemaker jobs that have waited too long, from the objects
SageMaker wrote (`offload.sagemaker.SageMakerLane.sweep`).
"""

from __future__ import annotations

from typing import Any

import tasks
from offload import logs
from offload.sagemaker import SageMakerLane
from offload.settings import get_settings
from offload.store import JobStore

settings = get_settings()
logs.configure_on_lambda("offload-scheduler", settings.log_level)
lane = SageMakerLane(settings, JobStore(settings), tasks.catalog())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The schedule's entry point: how many jobs ended up how."""
    return {"sagemaker": lane.sweep(settings.sagemaker_sweep_after_s)}
