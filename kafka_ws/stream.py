"""dojot's data-broker real-time interface on python-socketio (``socketio.AsyncServer``, async_mode aiohttp).

A client asks ``GET /stream/socketio`` for a one-time token, then connects to ``/socket.io/?token=<token>``.
It joins its tenant's room and receives ``all`` (every device-data message of the tenant) and ``<device-id>``
(that device's messages); with ``subject=dojot.notifications`` in the query it joins the tenant's notification
room instead and receives ``notification`` events (messages of ``<tenant>.dojot.notifications``).

Emits run on one task fed by a bounded queue (a full queue drops and counts). A client whose engine.io queue
holds more than ``max_backlog`` packets (it does not read) is disconnected and counted as slow; the others are
never delayed, since engine.io queues per client and python-socketio encodes each emit once per room."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import socketio

from kafka_ws.models import CloseCode, CloseError
from kafka_ws.service import CLOSED, CONNECTIONS, DROPPED, SENT, SLOW_CLIENTS, Tickets
from ondas import log as ondas_log
from ondas.errors import Unavailable
from ondas.topics import DEVICE_DATA, NOTIFICATIONS
from ondas.topics import topic as make_topic

log = logging.getLogger("kafka_ws.stream")

INTERFACE = "socketio"
NOTIFICATION_EVENT = "notification"


def data_room(tenant: str) -> str:
    return f"data:{tenant}"


def notification_room(tenant: str) -> str:
    return f"notifications:{tenant}"


class SocketIoStream:
    """The socket.io server and the sink of the fan-out (:class:`kafka_ws.service.RealtimeSink`)."""

    def __init__(
        self,
        tickets: Tickets,
        *,
        max_backlog: int = 1000,
        queue_size: int = 10000,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", logger=False)
        self._tickets = tickets
        self._max_backlog = max_backlog
        self._queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue(maxsize=queue_size)
        self._tenants: dict[str, str] = {}
        self._rooms: dict[str, str] = {}
        self._members: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        #: called when a room gets its first member or loses its last one
        self.on_change = on_change
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)

    # -- connections -------------------------------------------------------------------------------------------
    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        token = (query.get("token") or [""])[0]
        if not token and isinstance(auth, dict):
            token = str(auth.get("token", ""))
        try:
            payload = await self._tickets.redeem_socketio(token)
        except CloseError as exc:
            CLOSED.labels(str(int(exc.code))).inc()
            raise socketio.exceptions.ConnectionRefusedError(exc.frame_reason) from exc
        except Unavailable as exc:
            CLOSED.labels(str(int(CloseCode.INTERNAL))).inc()
            raise socketio.exceptions.ConnectionRefusedError("INTERNAL: cannot check the token") from exc
        subject = (query.get("subject") or [""])[0]
        room = notification_room(payload.tenant) if subject == NOTIFICATIONS else data_room(payload.tenant)
        await self.sio.enter_room(sid, room)
        self._tenants[sid] = payload.tenant
        self._rooms[sid] = room
        self._members[room] = self._members.get(room, 0) + 1
        if self._members[room] == 1 and self.on_change is not None:
            self.on_change()
        CONNECTIONS.labels(payload.tenant, INTERFACE).inc()
        with ondas_log.bind(tenant=payload.tenant):
            log.info("socket.io client connected", extra={"user": payload.user, "room": room})

    async def _disconnect(self, sid: str, *_args: Any) -> None:
        tenant = self._tenants.pop(sid, None)
        room = self._rooms.pop(sid, None)
        if room is not None:
            left = self._members.get(room, 0) - 1
            if left > 0:
                self._members[room] = left
            else:
                self._members.pop(room, None)
                if self.on_change is not None:
                    self.on_change()
        if tenant is not None:
            CONNECTIONS.labels(tenant, INTERFACE).dec()

    # -- the sink ----------------------------------------------------------------------------------------------
    def wants(self, tenant: str, subject: str) -> bool:
        room = notification_room(tenant) if subject == NOTIFICATIONS else data_room(tenant)
        return self._members.get(room, 0) > 0

    def topics(self) -> frozenset[str]:
        out = set()
        for room in self._members:
            kind, _, tenant = room.partition(":")
            out.add(make_topic(tenant, DEVICE_DATA if kind == "data" else NOTIFICATIONS))
        return frozenset(out)

    def device_data(self, tenant: str, message: Any) -> None:
        self._offer("data", tenant, message)

    def notification(self, tenant: str, message: Any) -> None:
        self._offer("notification", tenant, message)

    def _offer(self, kind: str, tenant: str, message: Any) -> None:
        try:
            self._queue.put_nowait((kind, tenant, message))
        except asyncio.QueueFull:
            DROPPED.labels(tenant, INTERFACE).inc()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="socketio-emit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for sid in list(self._tenants):
            await self.sio.disconnect(sid)

    async def _run(self) -> None:
        while True:
            kind, tenant, message = await self._queue.get()
            try:
                await self._emit(kind, tenant, message)
            except Exception:
                log.exception("socket.io emit failed", extra={"tenant": tenant})

    async def _emit(self, kind: str, tenant: str, message: Any) -> None:
        room = data_room(tenant) if kind == "data" else notification_room(tenant)
        sids = await self._healthy_participants(room, tenant)
        if not sids:
            return
        if kind == "data":
            await self.sio.emit("all", message, room=room)
            device = message.get("metadata", {}).get("deviceid") if isinstance(message, dict) else None
            if isinstance(device, str) and device:
                await self.sio.emit(device, message, room=room)
        else:
            await self.sio.emit(NOTIFICATION_EVENT, message, room=room)
        SENT.labels(tenant, INTERFACE).inc(len(sids))

    async def _healthy_participants(self, room: str, tenant: str) -> list[str]:
        """The room's clients, after disconnecting those whose engine.io queue is over the backlog limit."""
        healthy = []
        for sid, eio_sid in list(self.sio.manager.get_participants("/", room)):
            backlog = self._backlog(eio_sid)
            if backlog > self._max_backlog:
                DROPPED.labels(tenant, INTERFACE).inc()
                SLOW_CLIENTS.labels(tenant).inc()
                CLOSED.labels(str(int(CloseCode.SLOW_CLIENT))).inc()
                with ondas_log.bind(tenant=tenant):
                    log.warning("slow socket.io client disconnected", extra={"backlog": backlog})
                await self.sio.disconnect(sid)
                continue
            healthy.append(sid)
        return healthy

    def _backlog(self, eio_sid: str) -> int:
        sockets: dict[str, Any] = getattr(self.sio.eio, "sockets", {})
        sock = sockets.get(eio_sid)
        queue = getattr(sock, "queue", None)
        return queue.qsize() if queue is not None else 0
