"""The API app: `functions.api.main:app` for uvicorn, `functions.api.main:handler` for Lambda."""

from __future__ import annotations

import gc
import os

# On Lambda, what this module builds (the app, its models, the task catalog) lives as long
# as the execution environment. Collecting while building it only costs init time (one full
# collection: about 20 ms of a 300 ms cold start here), so collection pauses until the app
# is built, and the objects are then frozen out of every later collection too.
_PAUSE_GC = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and gc.isenabled()
if _PAUSE_GC:
    gc.disable()

from collections.abc import AsyncIterator  # noqa: E402 (after the pause, on purpose)
from contextlib import asynccontextmanager  # noqa: E402

from fastapi import FastAPI  # noqa: E402

import tasks  # noqa: E402
from functions.api import errors  # noqa: E402
from functions.api.body_limit import BodyLimitMiddleware, body_limit_for  # noqa: E402
from functions.api.routes import (  # noqa: E402
    dashboard,
    dlq,
    documents,
    events,
    health,
    jobs,
    queues,
    workers,
)
from functions.api.routes import tasks as task_routes  # noqa: E402
from functions.api.schemas import error_responses  # noqa: E402
from offload.aws_lambda.handler import lambda_handler  # noqa: E402
from offload.core.catalog import Catalog  # noqa: E402
from offload.fastapi import Offload  # noqa: E402
from offload.settings import Settings, get_settings  # noqa: E402


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> FastAPI:
    """A new app; tests pass their own settings and catalog."""
    settings = settings or get_settings()
    offload = Offload(settings, catalog or tasks.catalog())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn stopping: let inline jobs that already started finish.
        await offload.drain(settings.inline_shutdown_grace_s)

    app = FastAPI(
        title="offload",
        version="0.1.0",
        description="Submit background jobs and read their status.",
        lifespan=lifespan,
        # What any route may answer besides its own: the body limit, the caller, an outage.
        responses=error_responses(401, 413, 422, 503),
    )
    offload.install(app)
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=body_limit_for(settings.max_payload_bytes))
    for module in (jobs, events, task_routes, dlq, queues, workers, documents, health, dashboard):
        app.include_router(module.router)
    return app


# Built once per process: on Lambda, once per execution environment (during init).
try:
    app = create_app()
    handler = lambda_handler(app)
finally:
    if _PAUSE_GC:
        gc.freeze()
        gc.enable()
