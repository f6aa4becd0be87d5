"""An internal Lambda extension: the way to keep working after the response is returned.

Lambda freezes the execution environment once the runtime has posted the response AND every
extension has asked for its next event. An extension registered in the runtime's own process
(an *internal* extension) therefore holds the invocation open for post-response work by
asking for its next event only when that work is done. It must register during init, at
import of the handler's module: Lambda refuses registrations after the runtime's first
`next`. Internal extensions receive INVOKE events only (no SHUTDOWN).

Only the standard library's http.client: this module is imported on every cold start.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

_API = "/2020-01-01/extension"
# Tries of a `next` call that failed to connect before the environment is given up.
NEXT_ATTEMPTS = 3


class ExtensionError(RuntimeError):
    """The Extensions API refused a call."""


class InternalExtension:
    """Registers with the Extensions API, then calls `on_invoke(event)` for each INVOKE event
    on a thread of its own, asking for the next event only once `on_invoke` has returned.

    :param runtime_api: `AWS_LAMBDA_RUNTIME_API` (host:port).
    :param name: the extension's name.
    :param on_invoke: holds the invocation open for as long as it runs; never raises.
    """

    def __init__(
        self, runtime_api: str, name: str, on_invoke: Callable[[Mapping[str, Any]], None]
    ) -> None:
        self.runtime_api = runtime_api
        self.name = name
        self.on_invoke = on_invoke
        self.identifier: str | None = None
        self._thread: threading.Thread | None = None

    def register(self) -> None:
        """Register for INVOKE events and start the event loop's thread (call during init)."""
        status, headers, body = self._call(
            "POST",
            f"{_API}/register",
            {"events": ["INVOKE"]},
            {"Lambda-Extension-Name": self.name},
        )
        identifier = headers.get("lambda-extension-identifier")
        if status != 200 or not identifier:
            raise ExtensionError(
                f"registration of extension {self.name!r} refused: {status} {body!r}"
            )
        self.identifier = identifier
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-events", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self.identifier is not None
        headers = {"Lambda-Extension-Identifier": self.identifier}
        failures = 0
        while True:
            try:
                # Blocks until the next invocation; Lambda may freeze the process meanwhile.
                status, _, body = self._call("GET", f"{_API}/event/next", None, headers)
            except (OSError, http.client.HTTPException) as exc:
                failures += 1
                if failures >= NEXT_ATTEMPTS:
                    self._give_up(f"the Extensions API is unreachable: {exc}")
                    return
                time.sleep(0.1 * failures)
                continue
            failures = 0
            if status != 200:
                self._give_up(f"next event refused: {status} {body!r}")
                return
            try:
                event = json.loads(body)
                kind = event.get("eventType")
                if kind == "INVOKE":
                    self.on_invoke(event)
                elif kind == "SHUTDOWN":
                    return
            except Exception:
                # One bad event must not end the loop: every later invocation would then be
                # held to its timeout. Ask for the next one.
                log.exception("extension %s: event %r not handled", self.name, body[:200])

    def _give_up(self, why: str) -> None:
        """Without this thread every invocation would hang to its timeout: end the
        environment instead, so that Lambda starts a fresh one."""
        log.critical("extension %s: %s; ending this execution environment", self.name, why)
        try:
            self._call(
                "POST",
                f"{_API}/exit/error",
                {"errorMessage": why, "errorType": "Extension.EventLoopFailed"},
                {
                    "Lambda-Extension-Identifier": self.identifier or "",
                    "Lambda-Extension-Function-Error-Type": "Extension.EventLoopFailed",
                },
            )
        finally:
            os._exit(1)

    def _call(
        self, method: str, path: str, body: Any, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        # No timeout: `next` legitimately blocks between invocations (the process is frozen).
        connection = http.client.HTTPConnection(self.runtime_api)
        try:
            payload = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=payload, headers=dict(headers))
            response = connection.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            connection.close()
