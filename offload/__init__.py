"""offload: background work for FastAPI AI backends on AWS serverless.

Declare tasks with `task`, submit them with `Jobs.submit` (or `POST /jobs`); each runs in
its lane and keeps a durable status. Importing this package is cheap: no boto3 client, no
Celery, no model is touched until used.
"""

from __future__ import annotations

from offload.core.catalog import CATALOG, Batch, Catalog, Payload, TaskSpec, task
from offload.core.context import JobContext
from offload.core.model import Job, JobStatus
from offload.errors import PermanentFailure
from offload.settings import Settings, get_settings

__all__ = [
    "Batch",
    "CATALOG",
    "Catalog",
    "Job",
    "JobContext",
    "JobStatus",
    "Payload",
    "PermanentFailure",
    "Settings",
    "TaskSpec",
    "get_settings",
    "task",
]
