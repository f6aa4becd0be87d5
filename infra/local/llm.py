"""A local stand-in for an OpenAI-compatible chat completions endpoint (tests, `offload dev`).

It is not a language model: it answers extractively, with the sentence of the numbered
passages in the prompt that shares the most words with the question, cited like [2]. That is
enough to show a RAG pipeline retrieving the right passages end to end without a GPU or a
network. Failures can be injected (`fail_next`) to exercise retries.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "offload-local-extractive"
_PASSAGE = re.compile(r"^\[(\d+)\] (?:\([^)]*\) )?(.*)$")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and are as at be by do for how in is it of on or the to was what".split())


def extractive_answer(prompt: str) -> str:
    """The passage sentence closest in words to the prompt's question, with its citation."""
    passages: dict[int, str] = {}
    current: int | None = None
    question = ""
    for line in prompt.splitlines():
        found = _PASSAGE.match(line)
        if found:
            current = int(found.group(1))
            passages[current] = found.group(2)
        elif line.startswith("Question:"):
            question, current = line.removeprefix("Question:").strip(), None
        elif current is not None and line.strip():
            passages[current] += " " + line.strip()
    terms = {w for w in _WORD.findall(question.lower()) if w not in _STOP}
    best, best_score = "", -1
    for n, text in sorted(passages.items()):
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            score = len(terms & set(_WORD.findall(sentence.lower())))
            if score > best_score:
                best, best_score = f"{sentence.strip()} [{n}]", score
    return best if best_score > 0 else "I do not know: the passages do not say."


def tgi_answer(request: dict[str, Any]) -> list[dict[str, str]]:
    """What a TGI container's endpoint would answer to `llm.generate`'s request, made
    extractively (the local stack's stand-in for `<stack>-llm`)."""
    return [{"generated_text": extractive_answer(str(request.get("inputs", "")))}]


class LocalLlm:
    """The server, on 127.0.0.1 (port 0: any free one). `base_url` ends in /v1."""

    def __init__(self, port: int = 0) -> None:
        # The latest requests, for tests to read (bounded: `make dev` runs for days).
        self.requests: deque[dict[str, Any]] = deque(maxlen=1000)
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/v1"

    def start(self) -> LocalLlm:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` completions with `status`."""
        with self._lock:
            self._failures.extend([status] * count)

    def _next_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def __enter__(self) -> LocalLlm:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _handler(llm: LocalLlm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length))
                prompt = "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")
            except (ValueError, KeyError, TypeError) as exc:
                self._json(400, {"error": {"message": f"bad request: {exc}"}})
                return
            llm.requests.append(body)
            failure = llm._next_failure()
            if failure is not None:
                self._json(failure, {"error": {"message": "failing as the test asked"}})
                return
            text = extractive_answer(prompt)
            self._json(
                200,
                {
                    "id": f"chatcmpl-{len(llm.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 0},
                },
            )

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read `requests` instead

    return Handler
