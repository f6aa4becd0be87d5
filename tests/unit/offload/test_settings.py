from __future__ import annotations

import pytest

from offload.settings import Settings


def test_only_the_endpoint_names_every_local_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    settings = Settings()
    assert settings.is_local
    assert settings.table_name() == "offload-jobs"
    assert settings.workers_table_name() == "offload-workers"
    assert settings.bucket_name() == "offload-results-123456789012"
    assert settings.queue_url("cpu") == "http://127.0.0.1:5000/123456789012/offload-cpu"
    assert settings.queue_url("gpu") == "http://127.0.0.1:5000/123456789012/offload-gpu"


def test_deployed_values_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_JOBS_TABLE", "prod-jobs")
    monkeypatch.setenv("OFFLOAD_WORKERS_TABLE", "prod-workers")
    monkeypatch.setenv("OFFLOAD_CPU_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/prod-cpu")
    settings = Settings()
    assert not settings.is_local
    assert settings.table_name() == "prod-jobs"
    assert settings.workers_table_name() == "prod-workers"
    assert settings.queue_url("cpu").endswith("/prod-cpu")
    assert (
        settings.queue_url("gpu") == "https://sqs.us-east-1.amazonaws.com/123456789012/offload-gpu"
    )
