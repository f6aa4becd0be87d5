"""A stand-in for the EC2 instance metadata service (IMDSv2) on 127.0.0.1, for the tests of
a GPU worker's lifecycle and of its systemd unit's start check (`imds` fixture, conftest)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "imds-token"


class FakeImds:
    """IMDSv2 on 127.0.0.1: a token from PUT /latest/api/token, then metadata reads."""

    def __init__(self) -> None:
        self.values = {"instance-id": "i-0abc", "autoscaling/target-lifecycle-state": "InService"}
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._answer(200, TOKEN)
                else:
                    self._answer(400, "")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    self._answer(401, "")  # IMDSv2: no token, no metadata
                    return
                value = imds.values.get(self.path.removeprefix("/latest/meta-data/"))
                self._answer(200, value) if value is not None else self._answer(404, "")

            def _answer(self, status: int, body: str) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
