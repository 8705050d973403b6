"""HTTP: parse, call the ingest rules, render. No business logic here. The routes are a blueprint with the
agent's rules injected (:func:`blueprint`); app.py builds the Flask app around it.

- ``POST /http-agent/v1/incoming-messages``: one message; 204 once Kafka accepted it.
- ``POST /http-agent/v1/incoming-messages/create-many``: an array of messages, published in array order; 204
  when every one was accepted; 207 with per-item results when some were refused (the valid ones are
  published); when none was valid, the status of the refusals (400, or 422 when every item had a wrong type)
  with the same per-item results.

Errors are ``{"error": <reason>, "detail": <what is wrong>}``; reasons and statuses are in messages.STATUS.
Every refusal is counted in ``http_agent_messages_dropped_total{tenant,reason}`` and logged with tenant,
device and reason. A 401 carries ``WWW-Authenticate: Basic``.

On the TLS listener (server.py) a verified client certificate is the device's identity instead of the
Authorization header.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from agents.core.cache import DeviceCache
from agents.core.certs import PeerCertificate, certificate_identity
from agents.core.payload import Drop
from agents.core.stats import Statistics
from agents.http.messages import STATUS, Message, decode_json, parse_batch, parse_credentials, parse_message
from agents.http.metrics import DROPPED, RECEIVED
from agents.http.service import Caller, Ingest, Outcome
from ondas import jsonbody
from ondas.errors import Unavailable
from ondas.log import bind
from ondas.web import drain_body

log = logging.getLogger("agents.http.api")

ROOT = "/http-agent/v1"
PREFIX = f"{ROOT}/incoming-messages"
REALM = 'Basic realm="ondas-http-agent", charset="UTF-8"'


def error_body(reason: str, detail: str) -> dict[str, str]:
    return {"error": reason, "detail": detail}


class _Request:
    """How many messages a request holds, for the counters: 1 until a create-many array was read."""

    def __init__(self) -> None:
        self.messages = 1


def blueprint(
    ingest: Callable[[], Ingest],
    *,
    max_body_bytes: int,
    max_depth: int,
    max_batch: int,
    stats: Statistics,
    cache: DeviceCache,
) -> Blueprint:
    """The device routes, with the agent's rules injected: ``ingest`` returns them (built in the worker after
    fork, see app.py). Also the agent's error shape for what Flask refuses before a route runs."""
    # The whole body's depth limit (ondas.jsonbody): room for the batch array and the message object around
    # ``data``, whose own limit (max_depth) parse_message checks with a precise answer.
    body_depth = max(jsonbody.DEFAULT_MAX_DEPTH, max_depth + 2)
    bp = Blueprint("http_agent", __name__)

    def count_refusal(
        drop: Drop, tenant: str | None, device: str | None, count: int = 1, known: bool = False, **extra: Any
    ) -> None:
        """``known``: the device authenticated (its statistics count the refusal; else its tenant's do)."""
        DROPPED.labels(ingest().tenant_label(tenant), drop.reason).inc(count)
        if tenant and cache.has_tenant(tenant):
            for _ in range(count):
                stats.dropped(tenant, device if known else None, drop.reason)
        with bind(tenant=tenant[:64] if tenant else None, device=device[:128] if device else None):
            log.warning("message refused", extra={"reason": drop.reason, "detail": drop.detail, **extra})

    def refuse(drop: Drop, tenant: str | None, device: str | None, count: int, known: bool) -> Response:
        count_refusal(drop, tenant, device, count, known)
        if drop.reason == "too_large":
            drain_body()  # else gunicorn closes the connection under the client: a reset, not the 413
        response = jsonify(error_body(drop.reason, drop.detail))
        response.status_code = STATUS.get(drop.reason, 400)
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = REALM
        return response

    def claimed(certificate: PeerCertificate | None) -> tuple[str | None, str | None]:
        """The tenant and device a request claims to be (labels and logs only: not verified)."""
        try:
            if certificate:
                ref, _ = certificate_identity(certificate.info)
            else:
                ref, _ = parse_credentials(request.headers.get("Authorization"))
        except Drop:
            return None, None
        return ref.tenant, ref.device_id

    def receive(handle: Callable[[Caller, bytes, _Request], Response]) -> Response:
        rules = ingest()
        state = _Request()
        caller: Caller | None = None
        certificate = peer_certificate(request.environ)
        try:
            length = request.content_length
            if length is not None and length > max_body_bytes:
                raise Drop("too_large", f"the body is {length} bytes, at most {max_body_bytes}")
            caller = rules.authenticate(request.headers.get("Authorization"), certificate)
            online = rules.seen(caller)
            try:
                return handle(caller, _read_body(max_body_bytes), state)
            finally:
                if online is not None:
                    _settle_online(rules, caller, online)
        except (Drop, Unavailable) as exc:
            drop = exc if isinstance(exc, Drop) else Drop("unavailable", exc.message)
            tenant, device = (caller.ref.tenant, caller.ref.device_id) if caller else claimed(certificate)
            RECEIVED.labels(rules.tenant_label(tenant)).inc(state.messages)
            if caller is not None:
                for _ in range(state.messages):
                    stats.received(tenant or "", device or "")
            return refuse(drop, tenant, device, state.messages, known=caller is not None)

    def one(caller: Caller, body: bytes, state: _Request) -> Response:
        message = parse_message(decode_json(body, body_depth), max_depth)
        [outcome] = ingest().publish(caller, [message])
        if outcome.drop is not None:
            raise outcome.drop
        RECEIVED.labels(caller.ref.tenant).inc()
        stats.received(caller.ref.tenant, caller.ref.device_id)
        stats.published(caller.ref.tenant, caller.ref.device_id)
        return Response(status=204)

    def many(caller: Caller, body: bytes, state: _Request) -> Response:
        raw = parse_batch(decode_json(body, body_depth), max_batch)
        state.messages = len(raw)
        items: list[Message | Drop] = []
        for value in raw:
            try:
                items.append(parse_message(value, max_depth))
            except Drop as drop:
                items.append(drop)
        outcomes = ingest().publish(caller, items)
        RECEIVED.labels(caller.ref.tenant).inc(len(raw))
        for i, outcome in enumerate(outcomes):
            stats.received(caller.ref.tenant, caller.ref.device_id)
            if outcome.drop is not None:
                count_refusal(outcome.drop, caller.ref.tenant, caller.ref.device_id, known=True, index=i)
            else:
                stats.published(caller.ref.tenant, caller.ref.device_id)
        return _batch_answer(outcomes)

    @bp.post(PREFIX)
    def _one() -> Response:
        return receive(one)

    @bp.post(f"{PREFIX}/create-many")
    def _many() -> Response:
        return receive(many)

    # The agent's error shape for what Flask refuses before a route runs (unknown path, wrong method).
    @bp.app_errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 400
        if status == 413:
            drain_body()
            return jsonify(error_body("too_large", f"the body is larger than {max_body_bytes} bytes")), 413
        reason = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return jsonify(error_body(reason, exc.description or exc.name)), status

    return bp


def peer_certificate(environ: dict[str, Any]) -> PeerCertificate | None:
    """The client certificate the TLS handshake verified (gunicorn hands the connection's socket to the app),
    or None: plain HTTP, or TLS without a client certificate."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        return None
    info, der = sock.getpeercert(), sock.getpeercert(binary_form=True)
    return PeerCertificate(info, der) if info and der else None


def _read_body(max_bytes: int) -> bytes:
    """The request body, at most ``max_bytes`` (else a ``too_large`` Drop). A chunked body has no length and
    Werkzeug would not read it under gunicorn, so it is read from the server's input stream directly."""
    if request.content_length is not None:
        try:
            return request.get_data(cache=False)
        except RequestEntityTooLarge as exc:
            raise Drop("too_large", f"the body is larger than {max_bytes} bytes") from exc
    stream = request.environ.get("wsgi.input")
    data: bytes = stream.read(max_bytes + 1) if stream is not None else b""
    if len(data) > max_bytes:
        raise Drop("too_large", f"the body is larger than {max_bytes} bytes")
    return data


def _settle_online(rules: Ingest, caller: Caller, online: Future[Any]) -> None:
    try:
        online.result(30)
    except Exception as exc:  # noqa: BLE001  (Kafka refused the online event: the next request announces it)
        with bind(tenant=caller.ref.tenant, device=caller.ref.device_id):
            log.warning("Kafka did not accept an online event", extra={"error": str(exc)})
        rules.online_failed(caller)


def _batch_answer(outcomes: list[Outcome]) -> Response:
    results: list[dict[str, Any]] = []
    refused: list[Drop] = []
    for i, outcome in enumerate(outcomes):
        if outcome.drop is None:
            results.append({"index": i, "status": 204})
        else:
            refused.append(outcome.drop)
            drop = outcome.drop
            results.append({"index": i, "status": STATUS.get(drop.reason, 400), **error_body(drop.reason, drop.detail)})
    if not refused:
        return Response(status=204)
    accepted = len(outcomes) - len(refused)
    body: dict[str, Any] = {"accepted": accepted, "refused": len(refused), "results": results}
    if accepted:
        response = jsonify(body)
        response.status_code = 207
        return response
    statuses = {STATUS.get(d.reason, 400) for d in refused}
    response = jsonify(
        {**error_body("no_valid_message", f"no message was accepted; item 0: {refused[0].detail}"), **body}
    )
    response.status_code = statuses.pop() if len(statuses) == 1 else 400
    return response
