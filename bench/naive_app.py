"""The naive app of the load benchmark: heavy work as FastAPI `BackgroundTasks`, in the API's
own process, as people start out. The heavy work is the same PDF rendering offload's
`reports.pdf` task does on a cpu worker (`tasks.reports.render_pdf`), minus storing it.

Run as `uvicorn bench.naive_app:app`.
"""

from __future__ import annotations

from fastapi import BackgroundTasks, FastAPI

from functions.api.schemas import Health
from offload.core.model import utcnow
from tasks.reports import ReportRequest, render_pdf

app = FastAPI(title="naive")


@app.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The cheap endpoint, declared as offload's is."""
    return Health()


@app.post("/reports", status_code=202)
def report(request: ReportRequest, background: BackgroundTasks) -> dict[str, bool]:
    """Answer at once and render after the response, in this process's thread pool."""
    background.add_task(render_pdf, request, utcnow())
    return {"accepted": True}
