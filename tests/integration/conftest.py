"""In-process AWS (moto's `mock_aws`) with the template's resources provisioned."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from infra.local.stack import Clients, provision
from offload.settings import Settings
from tests.integration.imds import FakeImds

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@pytest.fixture
def settings() -> Iterator[Settings]:
    """Settings for a fresh mocked AWS holding the queues, table and bucket of template.yaml.

    No endpoint: moto intercepts boto3's calls to AWS's own hostnames in-process.
    """
    with mock_aws():
        settings = Settings(inline_retry_max_delay_s=0.05)
        provision(
            settings,
            clients=Clients(
                sqs=boto3.client("sqs"),
                dynamodb=boto3.client("dynamodb"),
                s3=boto3.client("s3"),
                sns=boto3.client("sns"),
                cloudwatch=boto3.client("cloudwatch"),
            ),
        )
        yield settings


@pytest.fixture
def drain(settings: Settings) -> Callable[[str], list[str]]:
    """Read and delete every message visible on a lane's queue (delayed ones included)."""

    def read(lane: str) -> list[str]:
        client: SQSClient = boto3.client("sqs")
        url = settings.queue_url("cpu" if lane == "cpu" else "gpu")
        bodies: list[str] = []
        while True:
            out = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = out.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(message["Body"])
                client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return read


@pytest.fixture
def retrieved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The jobs whose rag.answer retrieve step ran, once per run (steps kept in S3 are not
    run again)."""
    from tasks import rag

    calls: list[str] = []
    real = rag.retrieve

    def counting(ctx: Any, payload: Any) -> Any:
        calls.append(ctx.job_id)
        return real(ctx, payload)

    monkeypatch.setattr(rag, "retrieve", counting)
    return calls


@contextlib.contextmanager
def moto_endpoint() -> Iterator[str]:
    """A real moto server on a free local port, for tests that speak HTTP to it; its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    """A local IMDSv2 whose `values` a test sets."""
    fake = FakeImds()
    yield fake
    fake.close()
