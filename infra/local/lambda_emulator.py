"""A local AWS Lambda for tests: the Runtime API (2018-06-01) and the Extensions API
(2020-01-01) on 127.0.0.1, driving AWS's own runtime interface client
(`python -m awslambdaric module.handler`) in a subprocess.

One emulator is one execution environment: it runs one invocation at a time and delivers the
next only once the runtime and every registered extension are back at their `next` call, so
post-response work done by an internal extension is seen exactly as Lambda schedules it.
Status codes and error types follow AWS's runtime interface emulator (RAPID).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from infra.local.request_body import read_body

RUNTIME = "/2018-06-01/runtime"
EXTENSION = "/2020-01-01/extension"
ACCOUNT_ID = "123456789012"
MAX_EXTENSIONS = 10
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
_TICK_S = 0.05

Reply = tuple[int, bytes, dict[str, str]]


class LambdaInitError(RuntimeError):
    """The function's init failed: an init error was posted, the process exited or timed out."""

    def __init__(self, error_type: str, error_message: str, log_tail: str = "") -> None:
        super().__init__(f"{error_type}: {error_message}\n--- function log ---\n{log_tail}")
        self.error_type = error_type
        self.error_message = error_message


class InvocationError(RuntimeError):
    """An invocation failed: the handler raised, or the environment died under it."""

    def __init__(
        self, error_type: str, error_message: str, body: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message
        self.body: Mapping[str, Any] = body or {}


class InvocationTimedOut(InvocationError, TimeoutError):
    """The function timeout passed before the invocation completed."""


class _Phase(StrEnum):
    """Where the execution environment is in its life."""

    STOPPED = "stopped"
    INIT = "init"
    READY = "ready"
    DEAD = "dead"


class Invocation:
    """One invocation and what happened to it; every time is `time.monotonic()`.

    The function timeout counts from `invoke()`, so an invocation queued behind another
    spends its wait against it (Lambda would give it another environment instead).
    """

    def __init__(self, cond: threading.Condition, event: Any, timeout_s: float) -> None:
        self.request_id = str(uuid.uuid4())
        self.event = event
        self.payload = json.dumps(event).encode()
        self.timeout_s = timeout_s
        self.invoked_at = time.monotonic()
        self.deadline = self.invoked_at + timeout_s
        self.deadline_ms = int((time.time() + timeout_s) * 1000)
        self.trace_id = (
            f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
            f"Parent={uuid.uuid4().hex[:16]};Sampled=0"
        )
        self.delivered_at: float | None = None
        self.response_at: float | None = None
        self.completed_at: float | None = None
        self.timed_out = False
        self._cond = cond
        self._result = b""
        self._error: InvocationError | None = None
        self._aborted: InvocationError | None = None

    def wait_response(self, timeout_s: float) -> Any:
        """The handler's result, JSON-decoded; `InvocationError` if it failed.

        :param timeout_s: how long to wait; `TimeoutError` when nothing came by then.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self.response_at is not None or self._aborted is not None, timeout_s
            )
            if self.response_at is not None:
                if self._error is not None:
                    raise _fresh(self._error)
                try:
                    return json.loads(self._result)
                except ValueError:
                    return self._result
            if self._aborted is not None:
                raise _fresh(self._aborted)
        raise TimeoutError(f"no response to {self.request_id} within {timeout_s} s")

    def wait_complete(self, timeout_s: float) -> float:
        """When the invocation completed: response posted and every extension back at next.

        :param timeout_s: how long to wait; `TimeoutError` when it had not completed by then.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self.completed_at is not None or self._aborted is not None, timeout_s
            )
            if self.completed_at is not None:
                return self.completed_at
            if self._aborted is not None:
                raise _fresh(self._aborted)
        raise TimeoutError(f"{self.request_id} not complete within {timeout_s} s")


def _fresh(error: InvocationError) -> InvocationError:
    """A new instance to raise: raising one stored exception again would grow its traceback."""
    return type(error)(error.error_type, error.error_message, error.body)


@dataclass
class _Extension:
    id: str
    name: str
    invoke: bool
    ready: bool = False  # has called next once: its init is done
    at_next: bool = False  # blocked in next, waiting for an event
    event: dict[str, Any] | None = None


class LambdaEmulator:
    """One Lambda execution environment for `handler`, run by awslambdaric.

    :param handler: `module.function`, importable from `cwd`.
    :param env: extra environment of the function (overrides the defaults).
    :param timeout_s: the function timeout; past it the process is killed, as Lambda does.
    :param function_name: the function's name, in its ARN and environment.
    :param memory_mb: what `context.memory_limit_in_mb` says (nothing is enforced).
    :param cwd: the task root, put first on PYTHONPATH; default the current directory.
    :param log_path: where the process's stdout and stderr go; default a temporary file.

    As a context manager it starts on entry and stops on exit.
    """

    def __init__(
        self,
        handler: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        function_name: str = "offload-api",
        memory_mb: int = 1024,
        cwd: str | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self.handler = handler
        self.env = dict(env or {})
        self.timeout_s = timeout_s
        self.function_name = function_name
        self.memory_mb = memory_mb
        self.cwd = cwd or os.getcwd()
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"{function_name}-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self.region = (
            self.env.get("AWS_REGION")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        self.function_arn = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{function_name}"
        self.extensions: list[str] = []
        self.init_duration_s: float | None = None
        self._cond = threading.Condition()
        self._server: _Server | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._phase = _Phase.STOPPED
        # Bumped whenever the environment ends, to release the HTTP threads blocked in next.
        self._generation = 0
        self._init_failure: tuple[str, str] | None = None
        self._exts: dict[str, _Extension] = {}
        self._runtime_ready = False
        self._runtime_at_next = False
        self._runtime_event: Invocation | None = None
        self._queue: deque[Invocation] = deque()
        self._current: Invocation | None = None

    @property
    def runtime_api(self) -> str:
        """The `AWS_LAMBDA_RUNTIME_API` address (the server runs once `start()` was called)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def running(self) -> bool:
        """Whether the environment is initialised and alive."""
        with self._cond:
            return self._phase is _Phase.READY

    def output(self, tail: int | None = 8000) -> str:
        """What the function printed: the last `tail` characters, or all."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def start(self, init_timeout_s: float = 30.0) -> None:
        """Start the process and return once its init is done; a no-op when it is running.

        Init is done when the runtime and every registered extension have called next once.

        :param init_timeout_s: how long init may take; `LambdaInitError` after that, or at once
            on an init error or when the process exits.
        """
        if self.running:
            return
        self._stop_process()
        if self._server is None:
            self._server = _Server(self)
            threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            ).start()
        with self._cond:
            self._generation += 1
            self._phase = _Phase.INIT
            self._init_failure = None
            self._exts = {}
            self.extensions.clear()
            self._runtime_ready = self._runtime_at_next = False
            self._runtime_event = None
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", self.handler],
                cwd=self.cwd,
                env=self._child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._cond:
            self._process = process
        threading.Thread(target=self._watch, args=(process,), daemon=True).start()
        with self._cond:
            self._cond.wait_for(lambda: self._phase is not _Phase.INIT, init_timeout_s)
            if self._phase is _Phase.READY:
                self.init_duration_s = time.monotonic() - started
                return
            if self._phase is _Phase.INIT:
                self._fail("Sandbox.Timedout", f"init not done within {init_timeout_s} s")
            failure = self._init_failure or ("Runtime.Unknown", "init failed")
        self._stop_process()
        raise LambdaInitError(*failure, log_tail=self.output(4000))

    def invoke(self, event: Any, *, timeout_s: float | None = None) -> Invocation:
        """Queue one invocation of the function and return at once.

        :param event: the event, JSON-encodable.
        :param timeout_s: this invocation's function timeout, when not the emulator's.
        """
        invocation = Invocation(
            self._cond, event, self.timeout_s if timeout_s is None else timeout_s
        )
        with self._cond:
            self._queue.append(invocation)
            self._progress()
        return invocation

    def stop(self) -> None:
        """Kill the process and stop the server; what was not complete fails. Idempotent."""
        with self._cond:
            self._phase = _Phase.STOPPED
            self._generation += 1
            stopped = InvocationError("Emulator.Stopped", "the emulator stopped")
            for invocation in [*self._queue, self._current]:
                if invocation is not None and invocation.completed_at is None:
                    invocation._aborted = stopped
            self._queue.clear()
            self._current = None
            server, self._server = self._server, None
            self._cond.notify_all()
        self._stop_process()
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> LambdaEmulator:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _child_env(self) -> dict[str, str]:
        # A parent that itself runs in Lambda must not hand its own runtime's variables down.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_LAMBDA_", "_"))}
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=self.function_name,
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(self.memory_mb),
            AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{self.function_name}",
            AWS_LAMBDA_LOG_STREAM_NAME=f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
            AWS_LAMBDA_INITIALIZATION_TYPE="on-demand",
            AWS_EXECUTION_ENV=f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
            AWS_REGION=self.region,
            AWS_DEFAULT_REGION=self.region,
            LAMBDA_TASK_ROOT=self.cwd,
            PYTHONUNBUFFERED="1",
            TZ=":UTC",
        )
        env.update(self.env)
        python_path = env.get("PYTHONPATH", "")
        env.update(
            AWS_LAMBDA_RUNTIME_API=self.runtime_api,
            _HANDLER=self.handler,
            PYTHONPATH=os.pathsep.join(p for p in (self.cwd, python_path) if p),
        )
        return env

    def _stop_process(self) -> None:
        with self._cond:
            process, self._process = self._process, None
            if self._phase in (_Phase.INIT, _Phase.READY):
                self._phase = _Phase.DEAD
        if process is not None:
            _kill(process)

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """Enforce the function timeout and notice the process's death, until it is gone."""
        while True:
            with self._cond:
                if self._process is not process or self._phase not in (_Phase.INIT, _Phase.READY):
                    break
                now = time.monotonic()
                current = self._current
                if current is not None and now >= current.deadline:
                    # Killed before anyone hears of the timeout: by then the process is gone.
                    _kill(process)
                    current.timed_out = True
                    message = f"Task timed out after {current.timeout_s:.2f} seconds"
                    self._fail("Sandbox.Timedout", message, timed_out=True)
                elif process.poll() is not None:
                    message = f"Runtime exited with error: exit status {process.returncode}"
                    self._fail("Runtime.ExitError", message)
                else:
                    self._expire_queued(now)
                    self._cond.wait(_TICK_S)
        # The environment is over (timeout, crash, error, stop): like Lambda, kill what is left.
        _kill(process)

    def _fail(self, error_type: str, message: str, *, timed_out: bool = False) -> None:
        """End the environment (call with the lock held): init fails or the invocation does."""
        if self._phase is _Phase.INIT:
            self._init_failure = (error_type, message)
        current = self._current
        if current is not None:
            error = InvocationTimedOut if timed_out else InvocationError
            text = f"RequestId: {current.request_id} Error: {message}"
            current._aborted = error(error_type, text, {"errorType": error_type})
        self._current = None
        self._runtime_event = None
        self._phase = _Phase.DEAD
        self._generation += 1
        self._cond.notify_all()

    def _expire_queued(self, now: float) -> None:
        for invocation in [i for i in self._queue if now >= i.deadline]:
            self._queue.remove(invocation)
            invocation.timed_out = True
            message = f"Task timed out after {invocation.timeout_s:.2f} seconds, still queued"
            invocation._aborted = InvocationTimedOut("Sandbox.Timedout", message)
            self._cond.notify_all()

    def _progress(self) -> None:
        """Move init and invocations forward after any change (call with the lock held)."""
        now = time.monotonic()
        extensions = self._exts.values()
        if (
            self._phase is _Phase.INIT
            and self._runtime_ready
            and all(ext.ready for ext in extensions)
        ):
            self._phase = _Phase.READY
        everyone_at_next = self._runtime_at_next and all(ext.at_next for ext in extensions)
        current = self._current
        if current is not None and current.response_at is not None and everyone_at_next:
            current.completed_at = now
            self._current = None
        if self._phase is _Phase.READY and self._current is None and everyone_at_next:
            self._expire_queued(now)
            if self._queue:
                self._deliver(self._queue.popleft(), now)
        self._cond.notify_all()

    def _deliver(self, invocation: Invocation, now: float) -> None:
        # The runtime and each extension get the invocation together: an extension may well
        # see INVOKE before the handler runs.
        invocation.delivered_at = now
        self._current = invocation
        self._runtime_at_next = False
        self._runtime_event = invocation
        for ext in self._exts.values():
            if ext.invoke:
                ext.at_next = False
                ext.event = {
                    "eventType": "INVOKE",
                    "deadlineMs": invocation.deadline_ms,
                    "requestId": invocation.request_id,
                    "invokedFunctionArn": self.function_arn,
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
                }

    def _route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one Runtime or Extensions API request (headers with lower-case names)."""
        if method == "GET" and path == f"{RUNTIME}/invocation/next":
            return self._runtime_next()
        if method == "POST" and path.startswith(f"{RUNTIME}/invocation/"):
            request_id, _, kind = path.removeprefix(f"{RUNTIME}/invocation/").partition("/")
            if kind in ("response", "error"):
                return self._runtime_result(request_id, kind, headers, body)
        if method == "POST" and path == f"{RUNTIME}/init/error":
            return self._runtime_init_error(headers, body)
        if method == "POST" and path == f"{EXTENSION}/register":
            return self._register(headers, body)
        if method == "GET" and path == f"{EXTENSION}/event/next":
            return self._extension_next(headers)
        if method == "POST" and path in (f"{EXTENSION}/init/error", f"{EXTENSION}/exit/error"):
            return self._extension_error(path.split("/")[-2], headers)
        return _error(404, "NotFound", f"no route for {method} {path}")

    def _runtime_next(self) -> Reply:
        with self._cond:
            generation = self._generation
            current = self._current
            if self._phase not in (_Phase.INIT, _Phase.READY) or (
                current is not None and current.response_at is None
            ):
                return _error(403, "InvalidStateTransition", "next is not allowed now")
            # Registration closes at the runtime's first next: extensions register during init.
            self._runtime_ready = True
            self._runtime_at_next = True
            self._progress()
            while self._runtime_event is None:
                if generation != self._generation:
                    return _error(500, "InternalServerError", "the environment ended")
                self._cond.wait(0.5)
            invocation, self._runtime_event = self._runtime_event, None
        return (
            200,
            invocation.payload,
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
            },
        )

    def _runtime_result(
        self, request_id: str, kind: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        with self._cond:
            current = self._current
            if (
                current is None
                or current.request_id != request_id
                or current.response_at is not None
            ):
                return _error(400, "InvalidRequestID", "Invalid request ID")
            current.response_at = time.monotonic()
            if kind == "error":
                fields = _json_object(body)
                error_type = str(fields.get("errorType") or headers.get(_ERROR_TYPE, "Unknown"))
                message = str(fields.get("errorMessage", ""))
                current._error = InvocationError(error_type, message, fields)
            elif len(body) > MAX_RESPONSE_BYTES:
                message = f"Response payload size ({len(body)} bytes) exceeded the maximum"
                current._error = InvocationError("Function.ResponseSizeTooLarge", message)
                self._progress()
                return _error(413, "RequestEntityTooLarge", message)
            else:
                current._result = body
            self._progress()
        return _accepted()

    def _runtime_init_error(self, headers: dict[str, str], body: bytes) -> Reply:
        with self._cond:
            if self._phase is not _Phase.INIT:
                return _error(403, "InvalidStateTransition", "init error after init")
            fields = _json_object(body)
            error_type = str(fields.get("errorType") or headers.get(_ERROR_TYPE, "Unknown"))
            self._fail(error_type, str(fields.get("errorMessage", "")))
        return _accepted()

    def _register(self, headers: dict[str, str], body: bytes) -> Reply:
        name = headers.get("lambda-extension-name", "")
        if not name:
            return _error(403, "Extension.InvalidExtensionName", "Empty extension name")
        request = _json_object(body)
        events = request.get("events", [])
        if not isinstance(events, list) or request.get("configurationKeys"):
            return _error(403, "InvalidRequestFormat", f"invalid register request: {body!r}")
        for event in events:
            # Every extension here lives in the runtime process: internal ones cannot have
            # SHUTDOWN, and external extensions (from /opt/extensions) do not exist.
            if event != "INVOKE":
                reason = "ShutdownEventNotSupportedForInternalExtension"
                if event != "SHUTDOWN":
                    reason = "ErrorInvalidEventType"
                return _error(403, "Extension.InvalidEventType", f"{event}: {reason}")
        with self._cond:
            if self._phase is not _Phase.INIT or self._runtime_ready:
                message = "Extension registration closed already"
                return _error(403, "Extension.RegistrationClosed", message)
            if name in self.extensions:
                message = "Extension with this name already registered"
                return _error(403, "Extension.InvalidExtensionState", message)
            if len(self._exts) >= MAX_EXTENSIONS:
                message = f"Extension limit ({MAX_EXTENSIONS}) reached"
                return _error(403, "Extension.TooManyExtensions", message)
            ext = _Extension(id=str(uuid.uuid4()), name=name, invoke="INVOKE" in events)
            self._exts[ext.id] = ext
            self.extensions.append(name)
        reply: dict[str, Any] = {
            "functionName": self.function_name,
            "functionVersion": "$LATEST",
            "handler": self.handler,
        }
        if "accountId" in headers.get("lambda-extension-accept-feature", ""):
            reply["accountId"] = ACCOUNT_ID
        return _json(200, reply, {"Lambda-Extension-Identifier": ext.id})

    def _identify(self, headers: dict[str, str]) -> _Extension | Reply:
        """The calling extension (call with the lock held), or the error to answer."""
        given = headers.get("lambda-extension-identifier", "")
        if not given:
            message = "Missing Lambda-Extension-Identifier header"
            return _error(403, "Extension.MissingExtensionIdentifier", message)
        try:
            uuid.UUID(given)
        except ValueError:
            message = "Invalid Lambda-Extension-Identifier"
            return _error(403, "Extension.InvalidExtensionIdentifier", message)
        ext = self._exts.get(given)
        if ext is None:
            return _error(403, "Extension.UnknownExtensionIdentifier", f"Unknown extension {given}")
        return ext

    def _extension_next(self, headers: dict[str, str]) -> Reply:
        with self._cond:
            generation = self._generation
            ext = self._identify(headers)
            if not isinstance(ext, _Extension):
                return ext
            if self._phase not in (_Phase.INIT, _Phase.READY):
                return _error(403, "Extension.InvalidExtensionState", "the environment ended")
            ext.ready = True
            ext.at_next = True
            self._progress()
            while ext.event is None:
                if generation != self._generation:
                    return _error(500, "InternalServerError", "the environment ended")
                self._cond.wait(0.5)
            event, ext.event = ext.event, None
        return _json(200, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})

    def _extension_error(self, stage: str, headers: dict[str, str]) -> Reply:
        reported = headers.get("lambda-extension-function-error-type", "")
        if not reported:
            message = "Lambda-Extension-Function-Error-Type not found"
            return _error(403, "Extension.MissingHeader", message)
        with self._cond:
            ext = self._identify(headers)
            if not isinstance(ext, _Extension):
                return ext
            if stage == "init" and (self._phase is not _Phase.INIT or ext.ready):
                message = f"init error from {ext.name} after its init"
                return _error(403, "Extension.InvalidExtensionState", message)
            # Lambda resets the environment after either error; the process dies with it.
            error_type = "Extension.InitError" if stage == "init" else "Extension.ExitError"
            self._fail(error_type, f"extension {ext.name} reported {reported}")
        return _accepted()


_ERROR_TYPE = "lambda-runtime-function-error-type"


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return (
        status,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )


def _error(status: int, error_type: str, message: str) -> Reply:
    return _json(status, {"errorType": error_type, "errorMessage": message})


def _accepted() -> Reply:
    return _json(202, {"status": "OK"})


def _json_object(body: bytes) -> dict[str, Any]:
    """`body` as a JSON object; empty when it is not one (the caller reports the error)."""
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and its group (the handler's children), then reap it."""
    if process.poll() is None:
        # Only while the leader lives is the group id surely still ours.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, emulator: LambdaEmulator) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.emulator = emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A killed runtime drops its connections mid-request: that is no error of ours.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: the runtime client keeps its connection open between calls.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the body waits ~40 ms for an ACK.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        body = self._body() if method == "POST" else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        path = self.path.split("?", 1)[0]
        status, payload, reply_headers = self.server.emulator._route(method, path, headers, body)
        try:
            self.send_response(status)
            for name, value in reply_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except ConnectionError:
            self.close_connection = True

    def _body(self) -> bytes:
        return read_body(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per call would bury the function's own output."""
