"""Fixtures for every test: fake AWS credentials and fresh cached clients and settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from offload.aws import clients
from offload.settings import get_settings


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may reach a real AWS account: credentials are fake, the region fixed."""
    for name in list(__import__("os").environ):
        if name.startswith("OFFLOAD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients.clear_clients()
    get_settings.cache_clear()
    yield
    clients.clear_clients()
    get_settings.cache_clear()
