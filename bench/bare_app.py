"""The cold-start baseline: the least a FastAPI app on Lambda imports, one route and Mangum.

The route returns a typed value, as every route of the real API does: FastAPI builds a response
model from the annotation, and that costs the same here as there.
"""

from __future__ import annotations

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI(title="bare")


@app.get("/health")
def health() -> dict[str, str]:
    """Always ok."""
    return {"status": "ok"}


# As functions.api.main does: Mangum would otherwise run the lifespan on every invocation.
handler = Mangum(app, lifespan="off")
