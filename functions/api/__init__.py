"""The HTTP API: FastAPI, served by uvicorn locally and by Mangum on Lambda."""
