"""A counting reverse proxy in front of the local AWS (moto server): every request of every
process pointed at it is counted by service and operation, and SQS receives by whether
they returned messages (an empty long poll is a worker idling, not work done for a job).

moto's own recorder (`/moto-api/recorder/...`) logs requests too, but not their responses,
so it cannot tell an empty receive from a full one; hence a proxy.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra.local.request_body import read_body

# `Credential=<key>/<date>/<region>/<service>/aws4_request` in a SigV4 Authorization header.
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# Hop-by-hop headers, and those the proxy sets itself.
_DROPPED = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length", "host"}

Operation = tuple[str, str]  # (service, operation)


def operation(method: str, path: str, headers: dict[str, str], body: bytes) -> Operation:
    """The AWS service and operation of one request, from its target header (JSON
    protocols), its Action (query protocol) or, for S3's REST API, its method and path."""
    scope = _SCOPE.search(headers.get("authorization", ""))
    service = scope.group(1) if scope else "unknown"
    target = headers.get("x-amz-target")
    if target:
        return service, target.rsplit(".", 1)[-1]
    query = parse_qs(urlsplit(path).query)
    if body and "x-www-form-urlencoded" in headers.get("content-type", ""):
        query.update(parse_qs(body.decode("utf-8", "replace")))
    if "Action" in query:
        return service, query["Action"][0]
    if service == "s3":
        key = urlsplit(path).path.strip("/").partition("/")[2]
        verbs = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject"}
        if key and method in verbs:
            return service, verbs[method]
        return service, f"{method} {'object' if key else 'bucket'}"
    return service, f"{method} {urlsplit(path).path}"


def read_units(body: bytes) -> float:
    """DynamoDB read request units of a GetItem/Query request, items taken as <= 4 KB:
    1 for a strongly consistent read, 0.5 for an eventually consistent one."""
    try:
        consistent = bool(json.loads(body or b"{}").get("ConsistentRead"))
    except ValueError:
        consistent = False
    return 1.0 if consistent else 0.5


class CountingProxy:
    """Forward every request on 127.0.0.1 to `upstream_port`, counting as it goes.

    :param upstream_port: the moto server's port.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.counts: Counter[Operation] = Counter()
        self.read_units: dict[Operation, float] = {}
        self.server = _Server(self)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's endpoint, to give to every process instead of moto's."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> CountingProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def take(self) -> tuple[Counter[Operation], dict[Operation, float]]:
        """The counts (requests, DynamoDB read units) since the last take, and reset them."""
        with self.lock:
            counts, units = self.counts, self.read_units
            self.counts, self.read_units = Counter(), {}
        return counts, units

    def count(self, op: Operation, request: bytes, response: bytes) -> None:
        if op[1] == "ReceiveMessage":
            got = b'"Messages"' in response or b"<Message>" in response
            op = (op[0], "ReceiveMessage" if got else "ReceiveMessage (empty)")
        with self.lock:
            self.counts[op] += 1
            if op[0] == "dynamodb" and op[1] in ("GetItem", "Query"):
                self.read_units[op] = self.read_units.get(op, 0.0) + read_units(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: CountingProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # At shutdown moto goes first, under a worker's long poll: no error of the count's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # clients keep their connections, as they would to AWS
    disable_nagle_algorithm = True
    server: _Server
    upstream: http.client.HTTPConnection | None = None

    def _forward(self) -> None:
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        proxy = self.server.proxy
        if self.upstream is None:
            self.upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
        forwarded = {k: v for k, v in self.headers.items() if k.lower() not in _DROPPED}
        forwarded["Host"] = headers.get("host", "")
        forwarded["Content-Length"] = str(len(body))
        self.upstream.request(self.command, self.path, body=body, headers=forwarded)
        response = self.upstream.getresponse()
        payload = response.read()
        proxy.count(operation(self.command, self.path, headers, body), body, payload)
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _DROPPED:
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", response.getheader("Content-Length") or "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def _body(self) -> bytes:
        return read_body(self)

    def finish(self) -> None:
        super().finish()
        if self.upstream is not None:
            self.upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the counts are the record."""
