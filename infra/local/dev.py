"""The whole system on this machine: a moto server as the local AWS (or an AWS endpoint
already running), provisioned from `template.yaml`, the API under uvicorn and one Celery
worker per queue lane; optionally a fault proxy between them and the local AWS.

`offload dev` runs it in the foreground, restarting workers that die; the end-to-end tests
start the same `LocalSystem` on free ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import tasks
from infra.local.events import LocalEvents
from infra.local.fault_proxy import FaultPlan, FaultProxy
from infra.local.llm import LocalLlm, tgi_answer
from infra.local.stack import Clients, provision, wait_for_endpoint
from offload.settings import QueueLane, Settings
from tasks import llm

ROOT = Path(__file__).resolve().parents[2]


# Locally, webhooks may reach this machine's own receivers (refused by default elsewhere),
# and are signed with a fixed secret a local receiver can check.
LOCAL_WEBHOOK_NETWORKS = "127.0.0.0/8,::1/128"
LOCAL_WEBHOOK_SECRET = "offload-local-webhook-secret"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ProcessDied(RuntimeError):
    """A process of the local system exited while it should be serving."""


class RestartLimit(ProcessDied):
    """A lane's workers keep dying: restarting another would only spin."""


@dataclass
class Child:
    """A started process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None
    lane: QueueLane | None = None  # a worker's
    # Its latest lines, when it prints to this terminal (relayed, so they can be quoted).
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    relay: threading.Thread | None = None

    def output(self, tail: int | None = 8000) -> str:
        """What it printed: the last `tail` characters, or all (of its file, when it has one;
        its latest lines otherwise)."""
        if self.log_path is None:
            text = "".join(self.recent)
        elif self.log_path.exists():
            text = self.log_path.read_text(errors="replace")
        else:
            return ""
        return text if tail is None else text[-tail:]

    def last_line(self) -> str:
        """The last line it printed that is not blank, cut to 300 characters."""
        lines = [line.strip() for line in self.output(tail=8000).splitlines()]
        return next((line[:300] for line in reversed(lines) if line), "")


@dataclass
class LocalSystem:
    """The processes of a local offload, started and stopped together.

    :param aws_port: the moto server's port.
    :param api_port: the API's port.
    :param lanes: one worker per lane.
    :param log_dir: where each process writes its output; None: this terminal.
    :param aws_log: where the moto server writes (it logs every SQS poll); None: as the rest.
    :param visibility_timeout_s: the queues' visibility timeout, when not the template's
        (fault tests shorten it to see redeliveries in seconds).
    :param faults: put a fault proxy (`system.proxy`) between the local AWS and every
        process of the system (API, workers, local event sources), faulting by this plan;
        provisioning and `aws_url` (the tests' own checks) stay direct.
    :param aws_endpoint: an AWS endpoint already running (another moto, LocalStack) to
        provision and use instead of starting a moto server; never stopped here.
    :param restart_limit: at most this many restarts of one lane's workers within
        `restart_window_s` (`restart_dead_workers`).
    """

    aws_port: int = 5000
    api_port: int = 8000
    host: str = "127.0.0.1"
    lanes: tuple[QueueLane, ...] = ("cpu", "gpu")
    log_dir: Path | None = None
    aws_log: Path | None = None
    visibility_timeout_s: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    faults: FaultPlan | None = None
    aws_endpoint: str | None = None
    # The account an endpoint already running names its queues with (LocalStack:
    # 000000000000, moto: 123456789012), asked of its STS at start.
    account_id: str | None = field(default=None, init=False)
    restart_limit: int = 5
    restart_window_s: float = 60.0
    children: list[Child] = field(default_factory=list)
    _workers_started: int = field(default=0, init=False)
    _restarts: dict[str, list[float]] = field(default_factory=dict, init=False)
    # Between the local AWS and the system's processes, when `faults` is set.
    proxy: FaultProxy | None = field(default=None, init=False)
    # The local stand-in for a generation endpoint, unless OFFLOAD_LLM_BASE_URL names one.
    llm: LocalLlm | None = field(default=None, init=False)
    # SageMaker's notifications, the completions event source and the sweep's schedule.
    events: LocalEvents | None = field(default=None, init=False)

    @property
    def aws_url(self) -> str:
        """The local AWS endpoint itself (past the fault proxy, if any)."""
        return (self.aws_endpoint or f"http://{self.host}:{self.aws_port}").rstrip("/")

    @property
    def processes_aws_url(self) -> str:
        """The endpoint the system's processes use: the fault proxy's, when there is one."""
        return self.proxy.url if self.proxy is not None else self.aws_url

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return f"http://{self.host}:{self.api_port}"

    def settings(self, proxied: bool = False) -> Settings:
        """The settings of this system: reaching the local AWS directly, or as its processes
        do (`proxied`: through the fault proxy, when there is one)."""
        settings = Settings(
            aws_endpoint_url=self.processes_aws_url if proxied else self.aws_url,
            api_host=self.host,
            api_port=self.api_port,
            webhook_allowed_networks=LOCAL_WEBHOOK_NETWORKS,
            webhook_secret=LOCAL_WEBHOOK_SECRET,
        )
        if self.visibility_timeout_s is not None:
            settings = settings.model_copy(
                update={"queue_visibility_timeout_s": self.visibility_timeout_s}
            )
        if self.account_id:
            settings = settings.model_copy(update={"aws_account_id": self.account_id})
        return settings

    def env(self) -> dict[str, str]:
        """The environment of the children: only the endpoint is needed, names are defaults."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        if self.llm is not None:
            env["OFFLOAD_LLM_BASE_URL"] = self.llm.base_url
        env.update(
            OFFLOAD_AWS_ENDPOINT_URL=self.processes_aws_url,
            OFFLOAD_API_HOST=self.host,
            OFFLOAD_API_PORT=str(self.api_port),
            OFFLOAD_WEBHOOK_ALLOWED_NETWORKS=LOCAL_WEBHOOK_NETWORKS,
            OFFLOAD_WEBHOOK_SECRET=LOCAL_WEBHOOK_SECRET,
            PYTHONUNBUFFERED="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        if self.visibility_timeout_s is not None:
            env["OFFLOAD_QUEUE_VISIBILITY_TIMEOUT_S"] = str(self.visibility_timeout_s)
        if self.account_id:
            env["OFFLOAD_AWS_ACCOUNT_ID"] = self.account_id
        env.update(self.extra_env)
        return env

    @contextlib.contextmanager
    def running(
        self, start_timeout_s: float = 90.0, ready_timeout_s: float = 120.0
    ) -> Iterator[LocalSystem]:
        """Started, its workers ready; every process stopped on leaving, however it leaves."""
        self.start(timeout_s=start_timeout_s)
        try:
            self.wait_workers_ready(timeout_s=ready_timeout_s)
            yield self
        finally:
            self.stop()

    def start(self, timeout_s: float = 60.0) -> None:
        """Start everything and return once the API answers; stops all on failure."""
        try:
            if "OFFLOAD_LLM_BASE_URL" not in self.extra_env:
                self.llm = LocalLlm().start()
            if self.aws_endpoint is None:
                self._spawn(
                    "aws",
                    [
                        sys.executable,
                        "-m",
                        "moto.server",
                        "-H",
                        self.host,
                        "-p",
                        str(self.aws_port),
                    ],
                )
            wait_for_endpoint(self.aws_url, timeout_s)
            if self.aws_endpoint is not None:
                self.account_id = account_of(self.aws_url)
            stack = provision(self.settings())
            if self.visibility_timeout_s is not None:
                _set_visibility(self.settings(), stack.queues.values(), self.visibility_timeout_s)
            if self.faults is not None:
                self.proxy = FaultProxy(self.aws_url, self.faults).start()
            self.events = LocalEvents(
                self.settings(proxied=True), tasks.catalog(), models={llm.ENDPOINT: tgi_answer}
            ).start()
            self._spawn(
                "api",
                [
                    sys.executable,
                    "-m",
                    "infra.ops.cli",
                    "api",
                    "--host",
                    self.host,
                    "--port",
                    str(self.api_port),
                ],
            )
            for lane in self.lanes:
                self.start_worker(lane)
            self._wait_http(f"{self.api_url}/healthz", timeout_s)
        except BaseException:
            self.stop()
            raise

    def start_worker(self, lane: QueueLane) -> Child:
        """Start one more worker on `lane`."""
        self._workers_started += 1
        child = self._spawn(
            f"worker-{lane}-{self._workers_started}",
            [sys.executable, "-m", "infra.ops.cli", "worker", "--lane", lane],
        )
        child.lane = lane
        return child

    def restart_dead_workers(self) -> list[str]:
        """Start a new worker in the place of each that has exited; one line for each.

        Raises `RestartLimit` instead when its lane has already restarted `restart_limit`
        times within `restart_window_s`: a worker that cannot start must not spin.
        """
        lines = []
        for child in self.workers():
            code = child.process.poll()
            if code is None or child.lane is None:
                continue
            self.children.remove(child)
            signal_group(child.process, signal.SIGKILL)  # its pool's processes too
            if child.relay is not None:  # its last words, once the pipe has no writer left
                child.relay.join(timeout=2)
            said = f"{child.name} {_exit_reason(code)}"
            if last := child.last_line():
                said += f" (last line: {last})"
            now = time.monotonic()
            recent = [
                t for t in self._restarts.get(child.lane, []) if now - t < self.restart_window_s
            ]
            if len(recent) >= self.restart_limit:
                raise RestartLimit(
                    f"{said}; the {child.lane} lane restarted {len(recent)} times within "
                    f"{self.restart_window_s:g} s already: not again"
                )
            self._restarts[child.lane] = [*recent, now]
            lines.append(f"{said}; started {self.start_worker(child.lane).name} in its place")
        return lines

    def workers(self) -> list[Child]:
        """The running workers."""
        return [child for child in self.children if child.name.startswith("worker-")]

    def kill(self, child: Child) -> None:
        """SIGKILL a child and its process group (a worker with its pool), as a crash would."""
        signal_group(child.process, signal.SIGKILL)
        child.process.wait(10)
        self.children.remove(child)

    def wait_workers_ready(self, timeout_s: float = 60.0) -> None:
        """Block until every worker has said Celery's `ready.` (needs `log_dir`)."""
        deadline = time.monotonic() + timeout_s
        for child in self.workers():
            while " ready." not in child.output(tail=None):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{child.name} not ready:\n{child.output()}")
                time.sleep(0.2)

    def check_alive(self, workers: bool = True) -> None:
        """Raise `ProcessDied` (with its output) if any child (but workers, unless
        `workers`) has exited."""
        for child in self.children:
            if child.lane is not None and not workers:
                continue
            code = child.process.poll()
            if code is not None:
                raise ProcessDied(f"{child.name} exited with {code}\n{child.output()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop every child: SIGTERM to its process group, then SIGKILL after `grace_s`."""
        if self.llm is not None:
            self.llm.stop()
            self.llm = None
        if self.events is not None:
            self.events.stop()
            self.events = None
        for child in reversed(self.children):
            signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(child.process, signal.SIGKILL)
                child.process.wait(5)
            # Celery's pool children share the group: make sure none outlives its parent.
            signal_group(child.process, signal.SIGKILL)
        self.children.clear()
        if self.proxy is not None:  # last: the processes' final requests still cross it
            self.proxy.stop()
            self.proxy = None

    def _spawn(self, name: str, argv: list[str]) -> Child:
        out: IO[bytes] | int
        log_path = None
        if name == "aws" and self.aws_log is not None:
            log_path = self.aws_log
        elif self.log_dir is not None:
            log_path = self.log_dir / f"{name}.log"
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = log_path.open("ab")
        else:
            out = subprocess.PIPE  # relayed to this terminal, its last lines kept
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not isinstance(out, int):
            out.close()  # the child holds its own descriptor
        child = Child(name, process, log_path)
        if process.stdout is not None:
            child.relay = threading.Thread(
                target=_relay, args=(child, process.stdout), name=f"relay-{name}", daemon=True
            )
            child.relay.start()
        self.children.append(child)
        return child

    def _wait_http(self, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout_s:g} s")
            time.sleep(0.2)


_printing = threading.Lock()


def _relay(child: Child, stream: IO[bytes]) -> None:
    """Copy a child's output to this process's stdout line by line, keeping the latest."""
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            child.recent.append(line)
            with _printing, contextlib.suppress(OSError, ValueError):  # stdout closed: keep on
                sys.stdout.write(line)
                sys.stdout.flush()


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _set_visibility(settings: Settings, queue_urls: Iterable[str], seconds: int) -> None:
    client = Clients.for_endpoint(settings).sqs
    for url in queue_urls:
        if not url.endswith("-dlq"):
            client.set_queue_attributes(
                QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)}
            )


def account_of(endpoint: str) -> str | None:
    """The account an AWS endpoint says its callers are in (STS GetCallerIdentity); None
    when it will not say (then the local default is used)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    sts = boto3.client(
        "sts",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        account = sts.get_caller_identity().get("Account")
    except (BotoCoreError, ClientError):
        return None
    return account if isinstance(account, str) and account.isdigit() else None


def signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send `sig` to the process's group (its children too), if it still has one."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(
    aws_port: int,
    api_port: int,
    aws_endpoint: str | None = None,
    faults: FaultPlan | None = None,
) -> int:
    """`offload dev`: start, print where to look, restart workers that die, and stop
    everything on Ctrl-C or SIGTERM (or when another process dies: exit status 1)."""
    aws_log = None if aws_endpoint else Path(tempfile.mkdtemp(prefix="offload-dev-")) / "aws.log"
    system = LocalSystem(
        aws_port=aws_port,
        api_port=api_port,
        aws_log=aws_log,
        extra_env=passed_settings(),
        aws_endpoint=aws_endpoint,
        faults=faults,
    )
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    if aws_endpoint:
        print(f"offload dev: provisioning the AWS endpoint at {system.aws_url} ...", flush=True)
    else:
        print(f"offload dev: starting the local AWS on {system.aws_url} ...", flush=True)
    # Until the handlers below are set, Ctrl-C interrupts start(), which stops what it began.
    signal.signal(signal.SIGTERM, _interrupt)
    system.start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(_banner(system), flush=True)
    code = 0
    try:
        while not stopping:
            try:
                for line in system.restart_dead_workers():
                    print(f"offload dev: {line}", file=sys.stderr, flush=True)
                system.check_alive(workers=False)
            except ProcessDied as exc:
                print(f"offload dev: {exc}; stopping everything", file=sys.stderr, flush=True)
                code = 1
                break
            time.sleep(0.5)
    finally:
        print("offload dev: stopping ...", flush=True)
        system.stop()
        print("offload dev: stopped", flush=True)
    return code


# Where things are: the local system decides these, whatever this shell has exported (a
# deployment's queue URL must never reach a local worker).
_LOCATION_SETTINGS = {
    "aws_endpoint_url",
    "aws_region",
    "aws_account_id",
    "stack_name",
    "jobs_table",
    "results_bucket",
    "cpu_queue_url",
    "gpu_queue_url",
    "cpu_dlq_url",
    "gpu_dlq_url",
    "api_host",
    "api_port",
    "api_url",
    "local_aws_port",
}


def passed_settings() -> dict[str, str]:
    """The caller's OFFLOAD_* behaviour settings (auth, tokens, limits...), for the children."""
    return {
        name: value
        for name, value in os.environ.items()
        if name.upper().startswith("OFFLOAD_")
        and name[len("OFFLOAD_") :].lower() not in _LOCATION_SETTINGS
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _auth_hint(system: LocalSystem) -> str:
    auth = system.extra_env.get("OFFLOAD_AUTH", "none").lower()
    if auth == "tokens":
        return "tokens: send Authorization: Bearer <token> (the CLI sends $OFFLOAD_API_TOKEN)"
    if auth == "jwt":
        return "jwt: only API Gateway's verified claims identify a caller (401 here)"
    return "none: every request is the `local` caller (OFFLOAD_AUTH=tokens switches tokens on)"


def _llm_hint(system: LocalSystem) -> str:
    if system.llm is not None:
        return f"{system.llm.base_url} (a local extractive stand-in, not a model)"
    return system.extra_env.get("OFFLOAD_LLM_BASE_URL", "none")


def _webhook_hint(system: LocalSystem) -> str:
    env = system.env()
    return (
        f"may reach {env['OFFLOAD_WEBHOOK_ALLOWED_NETWORKS']} (refused by default elsewhere);"
        f"\n                 signed with OFFLOAD_WEBHOOK_SECRET={env['OFFLOAD_WEBHOOK_SECRET']}"
    )


def _aws_hint(system: LocalSystem) -> str:
    export = f"export OFFLOAD_AWS_ENDPOINT_URL={system.aws_url}"
    if system.aws_endpoint:
        hint = f"{system.aws_url}   (already running, not started or stopped here; {export})"
    else:
        hint = f"{system.aws_url}   (moto server; {export})"
        hint += f"\n                 its request log: {system.aws_log}"
    if system.proxy is not None:
        url = system.proxy.url
        hint += (
            f"\n  fault proxy    {url}   (every process's AWS requests; {system.proxy.plan.spec()})"
            f"\n                 counts: curl {url}/_faults/counts; "
            f"change: curl -d 'seed=1;sqs=drop:0.1' {url}/_faults/plan"
        )
    return hint


def _banner(system: LocalSystem) -> str:
    api = system.api_url
    return f"""
offload is up.
  API            {api}   (OpenAPI docs: {api}/docs)
  local AWS      {_aws_hint(system)}
  workers        {", ".join(system.lanes)} (Celery on SQS)
  callers        {_auth_hint(system)}
  generation     {_llm_hint(system)}
  webhooks       {_webhook_hint(system)}

Try:
  curl -s -X POST {api}/jobs -H 'content-type: application/json' \\
       -d '{{"task": "diag.sleep", "payload": {{"seconds": 3}}}}'
  .venv/bin/offload submit diag.sleep '{{"seconds": 3}}' --wait
  .venv/bin/offload jobs list

A worker that dies is restarted (at most {system.restart_limit} times a lane in \
{system.restart_window_s:g} s). Ctrl-C stops every process started here.
"""
