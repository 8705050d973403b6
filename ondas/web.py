"""The HTTP layer every REST service shares: a Flask app with JSON errors, request ids, structured
request logs, health and metrics routes, caller authentication, and gunicorn to serve it."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import Counter, Histogram
from werkzeug.exceptions import HTTPException

from ondas import log as ondas_log
from ondas.authn import Principal, authenticate
from ondas.errors import Invalid, OndasError, PayloadTooLarge
from ondas.health import Health, metrics_payload

log = logging.getLogger("ondas.web")

REQUESTS = Counter("ondas_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "ondas_http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def create_app(
    service: str,
    health: Health,
    public_key: Callable[[], str] | None = None,
    max_body_bytes: int = 1 << 20,
) -> Flask:
    """A Flask app with the platform's conventions; the service adds its own blueprints."""
    app = Flask(service)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ondas_health"] = health
    if public_key is not None:
        app.extensions["ondas_public_key"] = public_key

    @app.before_request
    def _start() -> None:
        g.ondas_start = time.perf_counter()
        g.request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        g.ondas_log = ondas_log.bind(request_id=g.request_id)
        g.ondas_log.__enter__()

    @app.after_request
    def _finish(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        elapsed = time.perf_counter() - g.get("ondas_start", time.perf_counter())
        REQUESTS.labels(service, request.method, route, str(response.status_code)).inc()
        LATENCY.labels(service, request.method, route).observe(elapsed)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if not route.startswith(("/health", "/metrics")):
            principal = g.get("principal")
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                    "tenant": principal.tenant if principal else None,
                },
            )
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        ctx = g.pop("ondas_log", None)
        if ctx is not None:
            ctx.__exit__(None, None, None)

    @app.errorhandler(OndasError)
    def _ondas_error(exc: OndasError) -> tuple[Response, int]:
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if status == 413:
            err: OndasError = PayloadTooLarge(f"request body larger than {max_body_bytes} bytes")
            return jsonify(err.to_dict()), 413
        kind = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return jsonify({"error": kind, "message": exc.description or exc.name}), status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error", extra={"path": request.path})
        return jsonify({"error": "internal", "message": "internal error; see the service log"}), 500

    @app.get("/health/live")
    def _live() -> Response:
        return jsonify(health.live())

    @app.get("/health/ready")
    def _ready() -> tuple[Response, int]:
        ok, body = health.ready()
        return jsonify(body), 200 if ok else 503

    @app.get("/metrics")
    def _metrics() -> Response:
        payload, ctype = metrics_payload()
        return Response(payload, mimetype=None, content_type=ctype)

    return app


def principal() -> Principal:
    """The authenticated caller of the current request (401 when there is none or it is invalid)."""
    cached = g.get("principal")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    from flask import current_app

    key_source = current_app.extensions["ondas_public_key"]
    p = authenticate(request.headers.get("Authorization"), key_source())
    g.principal = p
    # Entered for the rest of the request: the request-id binding undone at teardown restores the context as it
    # was before the request, which drops this binding too.
    ondas_log.bind(tenant=p.tenant, user=p.username).__enter__()
    return p


def json_body(kind: type = dict) -> Any:
    """The request's JSON body, which must be of ``kind``; a clear 400 otherwise."""
    raw = request.get_data(cache=True)
    if not raw:
        raise Invalid("the request needs a JSON body")
    payload = request.get_json(silent=True, force=True)
    if payload is None:
        raise Invalid("the request body is not valid JSON")
    if not isinstance(payload, kind):
        raise Invalid(f"the request body must be a JSON {'object' if kind is dict else kind.__name__}")
    return payload


def int_arg(name: str, default: int | None = None, minimum: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise Invalid(f"query parameter {name} must be an integer, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise Invalid(f"query parameter {name} must be >= {minimum}, got {value}")
    return value


def serve(app_factory: Callable[[], Flask], host: str, port: int, workers: int = 1, threads: int = 8) -> None:
    """Serve a Flask app with gunicorn (gthread workers). The app is built in each worker after fork."""
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", None)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("timeout", 60)
            self.cfg.set("keepalive", 30)

        def load(self) -> Flask:
            return app_factory()

    _App().run()
