from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infra.local.llm import LocalLlm, extractive_answer
from offload.settings import Settings
from tasks import llm


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalLlm]:
    monkeypatch.setattr(llm, "RETRY_PAUSES_S", (0.01, 0.01))
    with LocalLlm() as local:
        yield local


def settings(url: str | None) -> Settings:
    return Settings(llm_base_url=url, llm_model="m", llm_timeout_s=5)


def ask(url: str | None) -> llm.Completion:
    return llm.chat(
        settings(url), [{"role": "user", "content": "[1] Sky is blue.\n\nQuestion: sky?"}]
    )


def test_a_completion_is_read_from_the_openai_shape(server: LocalLlm) -> None:
    completion = ask(server.base_url)
    assert completion.text == "Sky is blue. [1]"
    assert server.requests[0]["model"] == "m"


def test_transient_failures_are_retried_within_the_step(server: LocalLlm) -> None:
    server.fail_next(2, status=429)
    assert ask(server.base_url).text == "Sky is blue. [1]"
    assert len(server.requests) == 3


def test_after_its_tries_a_transient_failure_is_left_to_the_job_retry(server: LocalLlm) -> None:
    server.fail_next(3, status=502)
    with pytest.raises(llm.GenerationUnavailable, match="502"):
        ask(server.base_url)


def test_a_refusal_is_permanent_at_once(server: LocalLlm) -> None:
    server.fail_next(1, status=401)
    with pytest.raises(llm.GenerationRefused, match="401"):
        ask(server.base_url)
    assert len(server.requests) == 1


def test_an_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm, "RETRY_PAUSES_S", ())
    with pytest.raises(llm.GenerationUnavailable, match="unreachable"):
        ask("http://127.0.0.1:9/v1")


def test_no_endpoint_is_a_clear_permanent_failure() -> None:
    with pytest.raises(llm.GenerationRefused, match="OFFLOAD_LLM_BASE_URL"):
        ask(None)


def test_the_stand_in_says_when_the_passages_do_not_answer() -> None:
    assert extractive_answer("[1] Cats sleep.\n\nQuestion: tax rates?").startswith("I do not")


def test_a_request_timeout_is_transient(server: LocalLlm) -> None:
    server.fail_next(3, status=408)
    with pytest.raises(llm.GenerationUnavailable, match="408"):
        ask(server.base_url)
    assert len(server.requests) == 3


@contextmanager
def answering(raw: bytes) -> Iterator[str]:
    """A server that answers every POST with these bytes, as they are; its /v1 URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.wfile.write(raw)
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def http_200(body: bytes, length: int | None = None) -> bytes:
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {length or len(body)}\r\n\r\n"
    return head.encode() + body


def test_an_answer_with_null_content_is_not_taken_as_the_text_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(llm, "RETRY_PAUSES_S", ())
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": None}}]})
    with (
        answering(http_200(body.encode())) as url,
        pytest.raises(llm.GenerationUnavailable, match="no text"),
    ):
        ask(url)


def test_an_answer_cut_off_midway_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm, "RETRY_PAUSES_S", ())
    with (
        answering(http_200(b'{"choices": [', length=500)) as url,
        pytest.raises(llm.GenerationUnavailable, match="unreachable"),
    ):
        ask(url)


@pytest.mark.parametrize(
    "answer",
    [
        [{"generated_text": "hi"}],  # TGI
        {"generated_text": "hi"},  # LMI
        {"choices": [{"message": {"content": "hi"}}]},  # OpenAI-style
        {"choices": [{"text": "hi"}]},  # completions-style
    ],
)
def test_generated_text_is_read_from_the_containers_shapes(answer: Any) -> None:
    assert llm.generated_text(answer) == "hi"


@pytest.mark.parametrize("answer", [{"default": "response"}, [], None, [{"generated_text": 3}]])
def test_an_answer_without_generated_text_is_refused(answer: Any) -> None:
    with pytest.raises(llm.GenerationRefused, match="no generated text"):
        llm.generated_text(answer)
