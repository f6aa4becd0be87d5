"""offload in FastAPI: `Offload`, `JobsDep`, who the caller is, request ids."""
