"""Local HTTP servers for the HTTP node's tests: a token service (§12.2.1), one that never answers, one that
answers too much."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LocalServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_POST(self) -> None:
                body = self._body()
                server.requests.append(("POST", self.path, dict(self.headers), body))
                if self.path == "/hang":
                    server.release.wait(30)
                    return
                if self.path == "/token":
                    creds = json.loads(body)
                    answer = json.dumps({"token": f"tok-{creds['username']}-{len(creds['password'])}"}).encode()
                elif self.path == "/big":
                    answer = b"x" * (1 << 20)
                else:
                    answer = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                server.requests.append(("GET", self.path, dict(self.headers), b""))
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://10.0.0.1/private")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
