"""The application's task catalog: one module per domain. Importing this package registers
every task in `offload.CATALOG`; task bodies keep their heavy imports to themselves."""

from __future__ import annotations

from offload.core.catalog import CATALOG, Catalog
from tasks import audit, diag, embeddings, llm, notify, rag, reports

__all__ = ["audit", "catalog", "diag", "embeddings", "llm", "notify", "rag", "reports"]


def catalog() -> Catalog:
    """The catalog with every application task registered."""
    return CATALOG
