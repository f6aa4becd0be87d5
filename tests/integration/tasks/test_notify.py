"""notify.webhook against a real HTTP receiver on 127.0.0.1, run by the inline runner."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tasks
from functions.api.main import create_app
from infra.local.dev import LOCAL_WEBHOOK_NETWORKS
from offload.aws.queues import QueuePublisher
from offload.aws.store import JobStore
from offload.core.model import Job, JobStatus
from offload.outbound import parse_networks, post_json, refusal
from offload.runtime.inline import InlineRunner
from offload.settings import Settings
from tasks.notify import DELIVERY_HEADER, SIGNATURE_HEADER, signature
from tests.integration import jobs

SECRET = "s3cret-for-tests"


@dataclass
class Receiver:
    """An HTTP server that answers each POST with the next scripted status (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/orders"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((dict(self.headers.items()), body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no" if status >= 300 else b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def local(settings: Settings) -> Settings:
    """The local stack's webhook settings: loopback allowed, a secret set."""
    update = {"webhook_allowed_networks": LOCAL_WEBHOOK_NETWORKS, "webhook_secret": SECRET}
    return settings.model_copy(update=update)


def send(settings: Settings, payload: dict[str, Any]) -> Job:
    """Run one notify.webhook job on an inline runner, to its end."""
    store = JobStore(settings)
    job_id = jobs.pending(store, "notify.webhook", lane="inline", payload=payload, max_attempts=5)
    spec = tasks.catalog().get("notify.webhook")
    runner = InlineRunner(store, QueuePublisher(settings), 1, 0.05, 4)
    asyncio.run(runner.run(spec, job_id, payload, None))
    return store.get(job_id)


def hook(url: str) -> dict[str, Any]:
    return {"url": url, "event": "order.paid", "data": {"order": 42}}


def test_loopback_is_refused_under_the_default_configuration(
    settings: Settings, receiver: Receiver
) -> None:
    job = send(settings.model_copy(update={"webhook_secret": SECRET}), hook(receiver.url))
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 1)
    assert job.error is not None and job.error.type == "DestinationRefused"
    assert "127.0.0.1 is a loopback address" in job.error.message
    assert receiver.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # link-local
        "http://10.0.0.7/hook",  # private
        "http://[::ffff:127.0.0.1]:9/hook",  # loopback, IPv4-mapped
        "http://[fe80::1]/hook",  # link-local, IPv6
        "http://0.0.0.0:9/hook",  # unspecified
        "http://localhost:9/hook",  # a name that resolves to loopback
        "http://user:pw@example.com/hook",  # credentials in the URL
    ],
)
def test_inside_destinations_are_refused_by_default(settings: Settings, url: str) -> None:
    job = send(settings.model_copy(update={"webhook_secret": SECRET}), hook(url))
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 1)
    assert job.error is not None and job.error.type == "DestinationRefused", job.error


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/", "http://[fe80::1]/"]
)
def test_allowing_loopback_allows_nothing_else(settings: Settings, url: str) -> None:
    job = send(local(settings), hook(url))
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 1)
    assert job.error is not None and job.error.type == "DestinationRefused", job.error


def test_a_delivery_is_signed_and_retried_while_the_receiver_is_unavailable(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.statuses = [503, 429]
    job = send(local(settings), hook(receiver.url))
    assert (job.status, job.attempts) == (JobStatus.SUCCESS, 3)
    assert job.result == {"status": 200, "attempt": 3}
    assert len(receiver.received) == 3
    for headers, body in receiver.received:
        # One delivery id for every attempt: the receiver drops repeats by it.
        assert headers[DELIVERY_HEADER] == job.job_id
        assert headers["Content-Type"] == "application/json"
        stamp = int(headers[SIGNATURE_HEADER].split(",")[0].removeprefix("t="))
        assert abs(time.time() - stamp) < 60
        expected = signature(SECRET, stamp, body)
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        event = json.loads(body)
        assert (event["id"], event["event"], event["data"]) == (
            job.job_id,
            "order.paid",
            {"order": 42},
        )
    headers, body = receiver.received[-1]
    assert signature("another secret", stamp, body) != headers[SIGNATURE_HEADER]


@pytest.mark.parametrize(("status", "said"), [(404, "answered 404"), (302, "redirects are not")])
def test_a_refusal_or_a_redirect_fails_at_once(
    settings: Settings, receiver: Receiver, status: int, said: str
) -> None:
    receiver.statuses = [status]
    job = send(local(settings), hook(receiver.url))
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 1)
    assert job.error is not None and said in job.error.message
    assert len(receiver.received) == 1  # the redirect's target was never asked


def test_an_unreachable_receiver_is_retried_then_fails(settings: Settings) -> None:
    closed = "http://127.0.0.1:9/hook"  # the discard port: nothing listens
    job = send(local(settings), hook(closed))
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 5)
    assert job.error is not None and job.error.type == "WebhookFailed"


def test_without_a_secret_nothing_is_sent(settings: Settings, receiver: Receiver) -> None:
    unsigned = local(settings).model_copy(update={"webhook_secret": None})
    job = send(unsigned, hook(receiver.url))
    assert (job.status, job.attempts) == (JobStatus.FAILURE, 1)
    assert job.error is not None and "OFFLOAD_WEBHOOK_SECRET" in job.error.message
    assert receiver.received == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (hook("file:///etc/passwd"), "payload.url"),
        (hook("http://example.com/a path"), "payload.url"),
        (hook("http://example.com:99999/"), "payload.url"),
        ({**hook("http://example.com/"), "event": "paid\r\nX-Injected: 1"}, "payload.event"),
        ({**hook("http://example.com/"), "retries": 9}, "payload.retries"),
    ],
)
def test_a_webhook_that_could_never_be_sent_is_422_at_submit(
    settings: Settings, payload: dict[str, Any], field: str
) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.post("/jobs", json={"task": "notify.webhook", "payload": payload})
    assert response.status_code == 422
    (detail,) = response.json()["error"]["details"]
    assert detail["field"] == field


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout(settings: Settings) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.2):  # a header line every 0.2 s, never the end
                try:
                    conn.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            post_json(url, b"{}", {}, timeout_s=1.0, allowed=parse_networks("127.0.0.0/8"))
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("address", "allowed", "kind"),
    [
        ("127.0.0.1", "", "loopback"),
        ("::1", "", "loopback"),
        ("169.254.169.254", "", "link-local"),
        ("fd00::1", "", "private"),
        ("192.168.1.1", "", "private"),
        ("100.64.0.1", "", "not a public"),  # carrier-grade NAT
        ("224.0.0.1", "", "multicast"),
        ("8.8.8.8", "", None),
        ("2606:4700::1111", "", None),
        ("10.1.2.3", "10.0.0.0/8", None),
        ("127.0.0.1", "::1/128", "loopback"),  # an IPv6 network allows no IPv4 address
        ("2002:a9fe:a9fe::1", "", "link-local"),  # 6to4 around 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "", "loopback"),  # Teredo around 127.0.0.1
        ("64:ff9b::a00:1", "", "private"),  # NAT64 around 10.0.0.1
        ("fec0::1", "", "site-local"),
    ],
)
def test_refusal_by_address(address: str, allowed: str, kind: str | None) -> None:
    reason = refusal(ipaddress.ip_address(address), parse_networks(allowed))
    assert (reason is None) if kind is None else (reason is not None and kind in reason)
