"""The HTTP layer every REST service shares: a Flask app with JSON errors, request ids, structured
request logs, health and metrics routes, caller authentication, and gunicorn to serve it."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from prometheus_client import Counter, Histogram
from werkzeug.exceptions import HTTPException

from ondas import jsonbody
from ondas import log as ondas_log
from ondas.authn import Principal, TokenCheck, authenticate
from ondas.errors import Invalid, OndasError, PayloadTooLarge, Unauthenticated
from ondas.health import Health, metrics_payload

log = logging.getLogger("ondas.web")

# The deepest JSON body any route accepts (app.config[JSON_DEPTH_KEY] overrides it per app).
MAX_JSON_DEPTH = jsonbody.DEFAULT_MAX_DEPTH
JSON_DEPTH_KEY = "ONDAS_MAX_JSON_DEPTH"

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
    token_check: TokenCheck | None = None,
) -> Flask:
    """A Flask app with the platform's conventions; the service adds its own blueprints."""
    app = Flask(service)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config[JSON_DEPTH_KEY] = MAX_JSON_DEPTH
    app.json = _JsonProvider(app)
    app.json.sort_keys = False
    app.extensions["ondas_health"] = health
    if public_key is not None:
        app.extensions["ondas_public_key"] = public_key
    if token_check is not None:
        # How callers are checked (ondas.authn.TokenCheck); without it, only the signature (public_key).
        app.extensions["ondas_token_check"] = token_check

    @app.before_request
    def _start() -> None:
        g.ondas_start = time.perf_counter()
        given = request.headers.get("X-Request-Id")
        # Echoed in a response header: only a printable ASCII id is kept (else one is made up).
        g.request_id = given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.ondas_log = ondas_log.bind(request_id=g.request_id)
        g.ondas_log.__enter__()

    @app.before_request
    def _refuse_control_characters() -> None:
        where = control_characters()
        if where is not None:
            raise Invalid(f"control characters in the {where}")

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
        if exc.status == 413:
            drain_body()
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if status == 413:
            drain_body()
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
    """The authenticated caller of the current request: 401 when there is none or its token is invalid, expired,
    revoked or outdated; 403 when its permissions do not allow this request; 503 when auth cannot be asked (the
    app's :class:`~ondas.authn.TokenCheck`; an app without one checks the signature only)."""
    cached = g.get("principal")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    from flask import current_app

    check: TokenCheck | None = current_app.extensions.get("ondas_token_check")
    if check is not None:
        p = check.principal(request.headers.get("Authorization"), request.method, request.path)
    else:
        key_source = current_app.extensions["ondas_public_key"]
        p = authenticate(request.headers.get("Authorization"), key_source())
    g.principal = p
    # Entered for the rest of the request: the request-id binding undone at teardown restores the context as it
    # was before the request, which drops this binding too.
    ondas_log.bind(tenant=p.tenant, user=p.username).__enter__()
    return p


def service_caller() -> str | None:
    """The platform service calling an internal route (``Authorization: Service <name>:<key>``, verified by
    auth): 401 for anything else, user tokens included; 503 when auth cannot be asked. None when the app's check
    is in signature mode (internal routes unchecked, for tests)."""
    from flask import current_app

    check: TokenCheck | None = current_app.extensions.get("ondas_token_check")
    if check is None:
        raise Unauthenticated("this service cannot verify service identities")
    name = check.service(request.headers.get("Authorization"))
    if name is not None:
        ondas_log.bind(caller_service=name).__enter__()
    return name


def json_body(kind: type = dict) -> Any:
    """The request's JSON body, which must be of ``kind``; a clear 400 otherwise (413 when larger than the app's
    limit). The platform's one rule for JSON (ondas.jsonbody): size, UTF-8, depth, then the parser."""
    from flask import current_app

    raw = request.get_data(cache=True)
    if not raw:
        raise Invalid("the request needs a JSON body")
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    try:
        payload = jsonbody.loads(raw, max_bytes=limit, max_depth=current_app.config.get(JSON_DEPTH_KEY, MAX_JSON_DEPTH))
    except jsonbody.BadJson as exc:
        if exc.reason == "too_large":
            raise PayloadTooLarge(f"request body larger than {limit} bytes") from exc
        message = _BAD_JSON.get(exc.reason, f"the request body is {exc.detail}")
        raise Invalid(message, reason=exc.reason) from exc
    if not isinstance(payload, kind):
        raise Invalid(f"the request body must be a JSON {'object' if kind is dict else kind.__name__}")
    return payload


# A refused body is read (and dropped) up to this size, so the answer reaches the client; a larger one is not.
DRAIN_MAX_BYTES = 64 << 20


def drain_body(limit: int = DRAIN_MAX_BYTES) -> None:
    """Read and drop what is left of the request body (a declared length up to ``limit``). A body refused before
    it was read (413) would otherwise be left on the connection: gunicorn closes it while the client, or the
    gateway, is still sending, and the client sees a reset (nginx: a 502) instead of the 413."""
    length = request.content_length
    stream = request.environ.get("wsgi.input")
    if stream is None or not length or length > limit:
        return
    remaining = length
    try:
        while remaining > 0:
            chunk = stream.read(min(1 << 16, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
    except (OSError, ValueError):  # the client went away: nothing left to answer
        return


# 0x00-0x1f and 0x7f, but a header value may hold a horizontal tab (RFC 9110 allows it there).
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def control_characters() -> str | None:
    """``header <name>`` when a header value of the current request holds control characters, else None (400:
    gunicorn already refuses those with the same rule; this covers every other server). The gateway refuses them in
    the path and query string too; a service called directly leaves those to its routes, which validate their
    parameters and answer their documented 400 or 404 (no route has a control character)."""
    for name, value in request.headers.items():
        if _HEADER_CONTROL.search(value):
            return f"header {name}"
    return None


_BAD_JSON = {
    "not_utf8": "the request body is not UTF-8",
    "not_json": "the request body is not valid JSON",
}


class _JsonProvider(DefaultJSONProvider):
    """Flask's JSON provider with the platform's rule on reading: ``request.get_json`` (and ``flask.json.loads``)
    refuse, as a ValueError, what json_body refuses, so no route can parse a body around the rule."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        raw = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s
        depth_limit = self._app.config.get(JSON_DEPTH_KEY, MAX_JSON_DEPTH)
        return jsonbody.loads(raw, max_depth=depth_limit)


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
