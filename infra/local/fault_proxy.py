"""A proxy in front of the local AWS that makes it flaky on purpose.

moto never fails, and real AWS does: for a seeded fraction of each service's requests (see
`infra.local.fault_plan`) this proxy answers 503 without forwarding (`refuse`), carries the
request out and then hangs up without an answer (`drop`: done, but the caller cannot know),
or waits before forwarding (`slow`). Only AWS-signed requests are faulted (moto's /moto-api/
and health probes pass), and it only ever connects to the one upstream it was given.

    python -m infra.local.fault_proxy --upstream http://127.0.0.1:5000 --plan 'seed=7;sqs=drop:0.05'
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from infra.local.fault_plan import Fault, FaultPlan, FaultSpecError, Operation, Rates, identify
from infra.local.request_body import read_body

__all__ = ["FaultCounts", "FaultPlan", "FaultProxy", "FaultSpecError", "Rates"]

# Hop-by-hop headers, and the framing the proxy sets itself (it always sends a length).
_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
_FRAMING = {"transfer-encoding", "content-length", "expect"}
# Longer than SQS's longest poll (20 s) plus moto's own slowness under load.
_UPSTREAM_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class FaultCounts:
    """What the proxy has done since it started.

    :param forwarded: requests sent upstream (slow and dropped ones included, refused not).
    :param requests: AWS-signed requests seen, by (service, operation).
    :param faults: faults given, by (service, operation, fault).
    """

    forwarded: int
    requests: dict[Operation, int]
    faults: dict[tuple[str, str, Fault], int]

    def total(self, fault: Fault | None = None, service: str | None = None) -> int:
        """Faults given, of one kind and/or to one service."""
        return sum(
            n
            for (svc, _, kind), n in self.faults.items()
            if fault in (None, kind) and service in (None, svc)
        )

    def as_json(self) -> dict[str, Any]:
        """Keyed `service:operation[:fault]`, for `GET /_faults/counts`."""
        return {
            "forwarded": self.forwarded,
            "requests": {":".join(k): n for k, n in sorted(self.requests.items())},
            "faults": {":".join(k): n for k, n in sorted(self.faults.items())},
        }


class FaultProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1 in front of one upstream, faulting by `plan`.

    :param upstream: the AWS endpoint (http: the proxy speaks no TLS).
    :param plan: the faults; None: none until `set_plan`.
    :param port: where to listen; 0: a free port.
    """

    def __init__(self, upstream: str, plan: FaultPlan | None = None, port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the fault proxy forwards to an http:// endpoint, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._plan = FaultPlan.none()
        self._rngs: dict[str, random.Random] = {}
        self._forwarded = 0
        self._requests: Counter[Operation] = Counter()
        self._faults: Counter[tuple[str, str, Fault]] = Counter()
        self.set_plan(plan or FaultPlan.none())
        self._server = _Server(self, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="fault-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        """The endpoint to give clients instead of the upstream's."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def plan(self) -> FaultPlan:
        """The plan it faults by now."""
        return self._plan

    def start(self) -> FaultProxy:
        """Serve, in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and hang up on every client still connected (again: nothing)."""
        if self._thread.is_alive():  # shutdown() would wait forever for a server never started
            self._server.shutdown()
        self._server.server_close()
        for sock in self._server.open_connections():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set_plan(self, plan: FaultPlan) -> None:
        """Fault by `plan` from now on; each service's draws start again from its seed."""
        with self._lock:
            self._plan, self._rngs = plan, {}

    def counts(self) -> FaultCounts:
        """A snapshot of the counts."""
        with self._lock:
            return FaultCounts(self._forwarded, dict(self._requests), dict(self._faults))

    def decide(self, op: Operation) -> tuple[Fault | None, float]:
        """The fault for one request (and the plan's delay), counted."""
        service = op[0]
        with self._lock:
            # One stream per service, so that one service's faults do not depend on how
            # its requests interleave with another's.
            rng = self._rngs.get(service)
            if rng is None:
                rng = self._rngs[service] = random.Random(f"{self._plan.seed}/{service}")
            fault = self._plan.rates_for(service).pick(rng.random())
            self._requests[op] += 1
            if fault is not None:
                self._faults[(*op, fault)] += 1
            return fault, self._plan.slow_s

    def count_forwarded(self) -> None:
        with self._lock:
            self._forwarded += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a long poll in flight must not hold up stop()
    request_queue_size = 128  # every worker's pool opens its own connections at once

    def __init__(self, proxy: FaultProxy, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.proxy = proxy
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def track(self, sock: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(sock)

    def open_connections(self) -> list[socket.socket]:
        with self._lock:
            return list(self._connections)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-request (a worker killed under its long poll): not an error here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect of AWS
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def _handle(self) -> None:
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        proxy = self.server.proxy
        path = self.path if self.path.startswith("/") else _origin_form(self.path)
        if path.startswith("/_faults/"):
            return self._control(path, body)
        op = identify(self.command, path, headers, body)
        fault, slow_s = proxy.decide(op) if op else (None, 0.0)
        if fault == "refuse":
            return self._refuse(headers, op)
        if fault == "slow":
            time.sleep(slow_s)
        try:
            response, payload = self._forward(path, body)
        except OSError as exc:
            self.close_connection = True
            return self.send_error(502, f"the fault proxy's upstream failed: {exc}")
        proxy.count_forwarded()
        if fault == "drop":
            self.close_connection = True  # done upstream; the answer is lost on the way
            return
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP | _FRAMING:
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", response.getheader("Content-Length") or "0")
        elif response.status >= 200 and response.status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def _forward(self, path: str, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
        # A fresh upstream connection per request: a stale kept-alive one could fail a
        # request that moto never saw, which would look like a fault nobody planned.
        upstream = http.client.HTTPConnection(*self.server.proxy.upstream, _UPSTREAM_TIMEOUT_S)
        try:
            # The Host header as the client sent it, and signed headers untouched.
            upstream.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP | _FRAMING:
                    upstream.putheader(name, value)
            if body or "content-length" in self.headers or "transfer-encoding" in self.headers:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            return response, response.read()
        finally:
            upstream.close()

    def _refuse(self, headers: dict[str, str], op: Operation | None) -> None:
        # In the service's own error shape, so that SDKs parse it as AWS's 503 (retryable).
        message = "Service Unavailable (refused by offload's fault proxy)"
        request_id = str(uuid.uuid4())
        if "json" in headers.get("content-type", ""):  # DynamoDB, SQS's JSON protocol
            kind = "application/x-amz-json-1.0"
            text = json.dumps({"__type": "ServiceUnavailable", "message": message})
        elif op is not None and op[0] == "s3":
            kind = "application/xml"
            text = f"<Error><Code>ServiceUnavailable</Code><Message>{message}</Message>"
            text += f"<RequestId>{request_id}</RequestId></Error>"
        else:  # the query protocol (SQS's XML, SNS, CloudWatch)
            kind = "text/xml"
            text = "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code>"
            text += f"<Message>{message}</Message></Error>"
            text += f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        self._reply(503, kind, text.encode(), {"x-amzn-RequestId": request_id})

    def _control(self, path: str, body: bytes) -> None:
        proxy = self.server.proxy
        if self.command == "GET" and path == "/_faults/counts":
            data = {**proxy.counts().as_json(), "plan": proxy.plan.spec()}
            return self._reply(200, "application/json", json.dumps(data).encode())
        if self.command == "POST" and path == "/_faults/plan":
            try:
                proxy.set_plan(FaultPlan.parse(body.decode()))
            except (FaultSpecError, UnicodeDecodeError) as exc:
                error = json.dumps({"error": str(exc)}).encode()
                return self._reply(400, "application/json", error)
            plan = json.dumps({"plan": proxy.plan.spec()}).encode()
            return self._reply(200, "application/json", plan)
        self._reply(
            404, "application/json", b'{"error": "GET /_faults/counts, POST /_faults/plan"}'
        )

    def _reply(
        self, status: int, kind: str, data: bytes, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response_only(status)
        for name, value in {"Content-Type": kind, **(extra or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return read_body(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the counts are the record."""


def _origin_form(target: str) -> str:
    """`http://host/path?q` as `/path?q`: whatever the host, the proxy goes to its upstream."""
    url = urlsplit(target)
    return (url.path or "/") + (f"?{url.query}" if url.query else "")


def main(argv: list[str] | None = None) -> int:
    """`python -m infra.local.fault_proxy`: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.fault_proxy", description=__doc__)
    parser.add_argument("--upstream", required=True, help="the AWS endpoint, e.g. moto's")
    parser.add_argument("--plan", default="", help="e.g. 'seed=7;sqs=refuse:0.03,drop:0.03'")
    parser.add_argument("--port", type=int, default=0, help="where to listen (default: free)")
    args = parser.parse_args(argv)
    try:
        proxy = FaultProxy(args.upstream, FaultPlan.parse(args.plan), args.port).start()
    except (FaultSpecError, ValueError) as exc:
        sys.stderr.write(f"fault proxy: {exc}\n")
        return 2
    sys.stdout.write(f"fault proxy on {proxy.url} -> {args.upstream}: {proxy.plan.spec()}\n")
    sys.stdout.write(f"counts: curl {proxy.url}/_faults/counts\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
