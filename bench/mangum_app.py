"""The inline-on-Lambda benchmark's baseline: FastAPI `BackgroundTasks` under Mangum, with a
2 s background task, as people first try post-response work on Lambda. Handler:
`bench.mangum_app.handler`."""

from __future__ import annotations

import time

from fastapi import BackgroundTasks, FastAPI
from mangum import Mangum

NAP_S = 2.0

app = FastAPI(title="mangum-background")


@app.post("/jobs", status_code=202)
def submit(background: BackgroundTasks) -> dict[str, str]:
    """Answer at once, nap after the response (Mangum waits for the nap all the same)."""
    background.add_task(time.sleep, NAP_S)
    return {"status": "accepted"}


handler = Mangum(app, lifespan="off")
