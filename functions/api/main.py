"""The API app: `functions.api.main:app` for uvicorn, `functions.api.main:handler` for Lambda."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import tasks
from functions.api import errors
from functions.api.routes import dlq, documents, health, jobs
from functions.api.routes import tasks as task_routes
from offload.catalog import Catalog
from offload.fastapi import Offload
from offload.lambda_handler import lambda_handler
from offload.settings import Settings, get_settings


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
    )
    offload.install(app)
    errors.install(app)
    for module in (jobs, task_routes, dlq, documents, health):
        app.include_router(module.router)
    return app


# Built once per process: on Lambda, once per execution environment (during init).
app = create_app()
handler = lambda_handler(app)
