"""Text generation through an OpenAI-compatible chat completions endpoint.

Plain HTTP (`urllib`): any server that speaks `POST {base}/chat/completions` works (OpenAI,
vLLM, TGI, Ollama, a SageMaker endpoint behind a gateway), and no SDK lands in the workers.
Transient failures (unreachable, timeouts, 429, 5xx) are retried a few times within the
step; what no retry fixes (400, 401, 404: a wrong model, key or URL) fails at once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from offload import JobContext, Payload, PermanentFailure, Settings, task

log = logging.getLogger(__name__)

# The sagemaker lane's generation endpoint: `<stack>-llm`.
ENDPOINT = "llm"
# Tries of one generation call, and the pause before each retry.
RETRY_PAUSES_S = (1.0, 3.0)


class GenerationUnavailable(RuntimeError):
    """The endpoint did not answer usefully; a later attempt may succeed."""


class GenerationRefused(PermanentFailure):
    """The endpoint refused the request as wrong; no retry will fix it."""


@dataclass(frozen=True)
class Completion:
    """A generated answer and the model that wrote it."""

    text: str
    model: str
    usage: dict[str, Any]


def chat(
    settings: Settings,
    messages: list[dict[str, str]],
    *,
    max_tokens: int = 512,
    temperature: float = 0.0,
) -> Completion:
    """One chat completion, retried on transient failures."""
    if not settings.llm_base_url:
        raise GenerationRefused(
            "no generation endpoint: set OFFLOAD_LLM_BASE_URL (an OpenAI-compatible /v1 URL)"
        )
    body = {
        "model": settings.llm_model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    for pause_s in (*RETRY_PAUSES_S, None):
        try:
            return _call(settings, body)
        except GenerationUnavailable as exc:
            if pause_s is None:
                raise
            log.warning("generation failed (%s); again in %g s", exc, pause_s)
            time.sleep(pause_s)
    raise AssertionError("unreachable")


def _call(settings: Settings, body: dict[str, Any]) -> Completion:
    # Imported here: the API imports every task module, and its cold start is budgeted.
    import http.client
    import urllib.error
    import urllib.request

    assert settings.llm_base_url is not None
    headers = {"content-type": "application/json"}
    if settings.llm_api_key:
        headers["authorization"] = f"Bearer {settings.llm_api_key}"
    request = urllib.request.Request(
        settings.llm_base_url.rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.llm_timeout_s) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode(errors="replace")
        if exc.code in (408, 429) or exc.code >= 500:
            raise GenerationUnavailable(f"{exc.code} from the endpoint: {detail}") from None
        raise GenerationRefused(f"the endpoint refused the request: {exc.code} {detail}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        # HTTPException: a connection cut mid-answer (IncompleteRead, RemoteDisconnected).
        raise GenerationUnavailable(f"endpoint unreachable: {exc}") from None
    except ValueError as exc:
        raise GenerationUnavailable(f"the endpoint's answer is not JSON: {exc}") from None
    try:
        text = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise GenerationUnavailable(f"no choices in the endpoint's answer: {data!r:.300}") from None
    if not isinstance(text, str):
        # null content: a refusal or a tool call, not an answer; another try may give one.
        raise GenerationUnavailable(f"the endpoint's answer has no text: {data!r:.300}")
    return Completion(text, str(data.get("model", body["model"])), data.get("usage") or {})


class Generate(Payload):
    """A prompt for the sagemaker lane's text generation endpoint."""

    prompt: str = Field(min_length=1, max_length=20_000)
    max_new_tokens: int = Field(default=256, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0: greedy")


@task(
    "llm.generate",
    lane="sagemaker",
    endpoint=ENDPOINT,
    payload=Generate,
    max_attempts=2,
    timeout_s=900,
)
def generate(payload: Generate, ctx: JobContext) -> dict[str, Any]:
    """Generate text on the SageMaker async endpoint `<stack>-llm` (a TGI/LMI container)."""
    # The new text only, not the prompt before it (the toolkit's pipelines echo it otherwise).
    parameters: dict[str, Any] = {
        "max_new_tokens": payload.max_new_tokens,
        "return_full_text": False,
    }
    if payload.temperature > 0:  # TGI refuses a temperature of 0: greedy is no sampling
        parameters.update(do_sample=True, temperature=payload.temperature)
    else:
        parameters["do_sample"] = False
    # The Hugging Face containers' request shape; their answer is stored as the result.
    return {"inputs": payload.prompt, "parameters": parameters}


def generated_text(result: Any) -> str:
    """The text of a generation endpoint's answer: TGI's `[{"generated_text": ...}]`,
    LMI's `{"generated_text": ...}`, or an OpenAI-style `choices` list."""
    first = result[0] if isinstance(result, list) and result else result
    if isinstance(first, dict):
        text = first.get("generated_text")
        if text is None and isinstance(first.get("choices"), list) and first["choices"]:
            choice = first["choices"][0]
            text = (choice.get("message") or {}).get("content") or choice.get("text")
        if isinstance(text, str):
            return text
    raise GenerationRefused(f"the endpoint's answer holds no generated text: {result!r:.300}")
