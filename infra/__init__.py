"""Local stack, ops tooling and deployment helpers: everything outside the runtime."""

from __future__ import annotations
