from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.llm_local import LocalLlm, extractive_answer
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
