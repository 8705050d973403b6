"""A stand-in for auth's internal ``GET /admin/tenants`` (our own component's contract) for tests of the
services that ask it which tenants exist."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AuthStub:
    """Answers GET /admin/tenants with the current list (``tenants``, changed by the test)."""

    def __init__(self, tenants: list[str]) -> None:
        self.tenants = tenants
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"tenants": stub.tenants}).encode()
                self.send_response(200 if self.path == "/admin/tenants" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
