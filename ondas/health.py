"""Health and metrics for every process.

- ``/health/live``: the process is running (200).
- ``/health/ready``: every registered readiness check passes (200), else 503 naming the failing checks.
- ``/metrics``: Prometheus text format.

Flask services get these routes from :mod:`ondas.web`; worker processes without an HTTP API serve them with
:func:`serve_health`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("ondas.health")

Check = Callable[[], bool]


class Health:
    def __init__(self, service: str) -> None:
        self.service = service
        self._checks: dict[str, Check] = {}

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def hold(self) -> Callable[[], None]:
        """Keep ``/health/ready`` at 503 (check ``startup``) until the returned function is called.

        For a process that serves its health routes before it has registered all of its checks: with no
        check registered yet, readiness would otherwise be 200 while nothing is started."""
        started = threading.Event()
        self.add_check("startup", started.is_set)
        return started.set

    def ready(self) -> tuple[bool, dict[str, Any]]:
        results: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                results[name] = "ok" if check() else "failing"
            except Exception as exc:  # noqa: BLE001  (any failure of a check means not ready)
                results[name] = f"failing: {type(exc).__name__}: {exc}"
        ok = all(v == "ok" for v in results.values())
        return ok, {"service": self.service, "status": "ready" if ok else "not ready", "checks": results}

    def live(self) -> dict[str, Any]:
        return {"service": self.service, "status": "alive"}


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


class _Handler(BaseHTTPRequestHandler):
    health: Health
    extra: dict[str, Callable[[], tuple[int, dict[str, Any]]]]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health/live":
            self._json(200, self.health.live())
        elif path == "/health/ready":
            ok, body = self.health.ready()
            self._json(200 if ok else 503, body)
        elif path == "/metrics":
            payload, ctype = metrics_payload()
            self._send(200, payload, ctype)
        elif path in self.extra:
            status, body = self.extra[path]()
            self._json(status, body)
        else:
            self._json(404, {"error": "not_found", "message": f"no route {path}"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, payload: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


def serve_health(
    health: Health,
    host: str,
    port: int,
    extra: dict[str, Callable[[], tuple[int, dict[str, Any]]]] | None = None,
) -> ThreadingHTTPServer:
    """Serve health and metrics (and ``extra`` GET routes) on a daemon thread; returns the server."""
    handler = type("HealthHandler", (_Handler,), {"health": health, "extra": extra or {}})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    log.info("health endpoints listening", extra={"host": host, "port": port})
    return server
