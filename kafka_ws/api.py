"""kafka_ws's HTTP and websocket routes (aiohttp): parse, call the service, render.

- ``GET /kafka-ws/v1/ticket``: ``{"ticket": <64 hex>}`` for the caller's token (checked by ``TokenCheck``).
- ``GET /kafka-ws/v1/topics/{topic}`` (websocket): the topic's messages, filtered; close codes in
  docs/api/kafka_ws-websocket.md. HTTP 426 for a request that is not a websocket upgrade.
- ``GET /stream/socketio``: ``{"token": <uuid>}``, the one-time token of a socket.io connection.
- ``GET /topic/{subject}``: ``{"topic": "<tenant>.<subject>"}`` (dojot's data broker).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from kafka_ws.models import CloseCode, CloseError, Filter
from kafka_ws.service import CLOSED, CONNECTIONS, SENT, Hub, Tickets, WsSubscriber, authorize_topic
from ondas import log as ondas_log
from ondas.authn import Principal, TokenCheck
from ondas.errors import Invalid, OndasError
from ondas.topics import topic as make_topic

log = logging.getLogger("kafka_ws.api")

TICKET_PATH = "/kafka-ws/v1/ticket"
TOPICS_PATH = "/kafka-ws/v1/topics/{topic}"
WEBSOCKET = "websocket"
NOT_WEBSOCKET = "Invalid request - non-WebSocket connection received in WS endpoint"
#: Seconds the server waits for a close handshake (or a blocked write) before it drops the TCP connection.
CLOSE_SECONDS = 2.0


def _error(exc: OndasError) -> web.Response:
    return web.json_response(exc.to_dict(), status=exc.status)


async def _principal(token_check: TokenCheck, request: web.Request) -> Principal:
    # TokenCheck may ask auth over HTTP (blocking): never on the event loop's thread.
    return await asyncio.to_thread(
        token_check.principal, request.headers.get("Authorization"), request.method, request.path
    )


class Connections:
    """The open websocket connections of this process (for shutdown and the lifetime rule)."""

    def __init__(self) -> None:
        self.closing: set[asyncio.Event] = set()

    def shutdown(self) -> None:
        for event in list(self.closing):
            event.set()


def routes(
    tickets: Tickets,
    hub: Hub,
    token_check: TokenCheck,
    connections: Connections,
    *,
    queue_size: int,
    max_lifetime_seconds: float,
) -> list[web.RouteDef]:
    async def ticket(request: web.Request) -> web.Response:
        try:
            who = await _principal(token_check, request)
            value = await tickets.issue(who.tenant, who.username)
        except OndasError as exc:
            return _error(exc)
        with ondas_log.bind(tenant=who.tenant):
            log.info("ticket issued", extra={"user": who.username})
        return web.json_response({"ticket": value})

    async def socketio_token(request: web.Request) -> web.Response:
        try:
            who = await _principal(token_check, request)
            value = await tickets.issue_socketio(who.tenant, who.username)
        except OndasError as exc:
            return _error(exc)
        return web.json_response({"token": value})

    async def topic_of_subject(request: web.Request) -> web.Response:
        try:
            who = await _principal(token_check, request)
            try:
                name = make_topic(who.tenant, request.match_info["subject"])
            except ValueError as exc:
                raise Invalid(f"bad subject: {exc}") from exc
        except OndasError as exc:
            return _error(exc)
        return web.json_response({"topic": name})

    async def not_a_topic(request: web.Request) -> web.StreamResponse:
        """A websocket on a path under /kafka-ws/v1 that is no topic route: 4400."""
        ws = web.WebSocketResponse(timeout=CLOSE_SECONDS)
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": "not_found", "message": f"no route {request.path}"}, status=404)
        await ws.prepare(request)
        await _close(request, ws, CloseError(CloseCode.INVALID_PATHNAME, f"no topic route {request.path}"))
        return ws

    async def topic_socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=CLOSE_SECONDS, heartbeat=30.0)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text=NOT_WEBSOCKET, headers={"Upgrade": WEBSOCKET})
        await ws.prepare(request)
        topic = request.match_info["topic"]
        query = request.query
        try:
            payload = await tickets.redeem(query.get("ticket", ""))
            authorize_topic(payload.tenant, topic)
            flt = Filter.parse(query.get("fields", ""), query.get("where", ""))
        except CloseError as exc:
            await _close(request, ws, exc)
            return ws
        except Exception as exc:  # noqa: BLE001  (Redis away or any failure: 4999, never an open socket)
            log.warning("websocket refused: internal error", extra={"error": f"{type(exc).__name__}: {exc}"})
            await _close(request, ws, CloseError(CloseCode.INTERNAL, "there is an error in the server"))
            return ws
        with ondas_log.bind(tenant=payload.tenant):
            await _serve(request, ws, payload.tenant, topic, flt)
        return ws

    async def _serve(request: web.Request, ws: web.WebSocketResponse, tenant: str, topic: str, flt: Filter) -> None:
        slow = asyncio.Event()
        closing = asyncio.Event()
        sub = WsSubscriber(tenant, topic, flt, queue_size, lambda _s: slow.set())
        hub.add(sub)
        connections.closing.add(closing)
        CONNECTIONS.labels(tenant, WEBSOCKET).inc()
        opened = time.monotonic()
        log.info("websocket subscribed", extra={"topic": topic})

        async def send() -> None:
            while True:
                frame = await sub.queue.get()
                await ws.send_str(frame)
                SENT.labels(tenant, WEBSOCKET).inc()

        async def read() -> None:
            async for _msg in ws:
                pass  # clients have nothing to say; control frames are answered by aiohttp

        tasks = [
            asyncio.create_task(send()),
            asyncio.create_task(read()),
            asyncio.create_task(slow.wait()),
            asyncio.create_task(closing.wait()),
        ]
        sender, reader, slow_task, closing_task = tasks
        timeout = None if max_lifetime_seconds < 0 else max_lifetime_seconds
        try:
            await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            reason: CloseError | None
            if slow.is_set():
                reason = CloseError(CloseCode.SLOW_CLIENT, "the client does not read its messages fast enough")
                log.warning("slow websocket client closed", extra={"topic": topic, "queue": sub.queue.qsize()})
            elif closing.is_set():
                reason = CloseError(CloseCode.GOING_AWAY, "the server is shutting down")
            elif reader.done():
                reason = None  # the client closed
            elif sender.done():
                reason = None if sender.exception() is not None else CloseError(CloseCode.INTERNAL, "sender ended")
            else:
                reason = CloseError(CloseCode.EXPIRED_CONNECTION, "connection lifetime is over")
            hub.remove(sub)
            sender.cancel()
            slow_task.cancel()
            closing_task.cancel()
            if reason is not None:
                await _close(request, ws, reason)
            reader.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            hub.remove(sub)
            connections.closing.discard(closing)
            CONNECTIONS.labels(tenant, WEBSOCKET).dec()
            log.info(
                "websocket closed",
                extra={"topic": topic, "code": ws.close_code, "seconds": round(time.monotonic() - opened, 3)},
            )

    return [
        web.get(TICKET_PATH, ticket),
        web.get("/stream/socketio", socketio_token),
        web.get("/stream/socketio/", socketio_token),  # dojot's permission (auth's catalogue, id 17) names this form
        web.get("/topic/{subject}", topic_of_subject),
        web.get(TOPICS_PATH, topic_socket),
        web.get("/kafka-ws/v1/{tail:.*}", not_a_topic),
    ]


async def _close(request: web.Request, ws: web.WebSocketResponse, reason: CloseError) -> None:
    """Close with ``reason``'s code; a client that does not take the close frame in time is cut off."""
    CLOSED.labels(str(int(reason.code))).inc()
    try:
        await asyncio.wait_for(ws.close(code=int(reason.code), message=reason.frame_reason.encode()), CLOSE_SECONDS)
    except (TimeoutError, ConnectionError):
        transport = request.transport
        if transport is not None:
            transport.abort()


def health_routes(ready: Any, live: Any, metrics: Any) -> list[web.RouteDef]:
    async def _live(_request: web.Request) -> web.Response:
        return web.json_response(live())

    async def _ready(_request: web.Request) -> web.Response:
        ok, body = await ready()
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(_request: web.Request) -> web.Response:
        payload, ctype = metrics()
        resp = web.Response(body=payload)
        resp.headers["Content-Type"] = ctype
        return resp

    return [web.get("/health/live", _live), web.get("/health/ready", _ready), web.get("/metrics", _metrics)]
