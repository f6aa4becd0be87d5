"""A handler module whose import fails, as one missing its configuration would."""

from __future__ import annotations

raise RuntimeError("OFFLOAD_JOBS_TABLE is not set")
