"""The one place that wires kafka_ws together: the Redis ticket store, the fan-out hub and its Kafka consumer
(which reads the topics the hub's websockets and the socket.io rooms listen to), the socket.io server and the
aiohttp application that serves them all.

Server: aiohttp on asyncio, one process, one event loop. Websockets are aiohttp's own; socket.io is
python-socketio's ``AsyncServer`` attached to the same aiohttp application (``/socket.io/``), so both interfaces
share one consumer, one port and one loop. Blocking work (Kafka, token checks that ask auth) runs on
threads; results reach the loop through ``call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from kafka_ws import api
from kafka_ws.consumers import Fanout
from kafka_ws.service import Hub, Tickets
from kafka_ws.settings import KafkaWsSettings
from kafka_ws.store_redis import RedisTicketStore
from kafka_ws.stream import SocketIoStream
from ondas.authn import TokenCheck, load_public_key
from ondas.health import Health, metrics_payload

SERVICE = "kafka-ws"

log = logging.getLogger("kafka_ws.app")


class KafkaWs:
    """The parts of one kafka_ws process; :meth:`application` is what ``web.run_app`` serves."""

    def __init__(self, settings: KafkaWsSettings) -> None:
        self.settings = settings
        common = settings.common
        self.store = RedisTicketStore(settings.redis_url)
        self.tickets = Tickets(self.store, settings.ticket_secret, settings.ticket_ttl_seconds)
        self.hub = Hub(on_change=self._listened_changed)
        self.stream = SocketIoStream(
            self.tickets, max_backlog=settings.socketio_max_backlog, on_change=self._listened_changed
        )
        self.hub.sinks.append(self.stream)
        key_file = common.jwt_public_key_file
        self.token_check = TokenCheck.from_settings(common, lambda: load_public_key(key_file))
        self.connections = api.Connections()
        self.fanout: Fanout | None = None
        self.health = Health(SERVICE)

    def _listened_changed(self) -> None:
        """A topic got its first listener or lost its last one: the consumer reads what is listened to now."""
        if self.fanout is not None:
            self.fanout.set_topics(self.hub.topics() | self.stream.topics())

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        redis_ok = await self.store.ping()
        ok, body = self.health.ready()
        checks = {
            **body["checks"],
            "redis": "ok" if redis_ok else "failing",
            "consumer": "ok" if self.fanout is not None and self.fanout.ready else "failing",
        }
        ok = all(v == "ok" for v in checks.values())
        return ok, {"service": SERVICE, "status": "ready" if ok else "not ready", "checks": checks}

    def application(self) -> web.Application:
        app = web.Application()
        settings = self.settings
        app.add_routes(api.health_routes(self.ready, self.health.live, metrics_payload))
        app.add_routes(
            api.routes(
                self.tickets,
                self.hub,
                self.token_check,
                self.connections,
                queue_size=settings.queue_size,
                max_lifetime_seconds=settings.max_lifetime_seconds,
            )
        )
        self.stream.sio.attach(app)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        self.fanout = Fanout(
            self.settings.common.kafka_bootstrap,
            loop,
            self.hub.dispatch,
            batch_size=self.settings.kafka_batch_size,
            linger_seconds=self.settings.linger_seconds,
        )
        self.fanout.start()
        self.stream.start()
        log.info("kafka_ws started", extra={"group": self.fanout.group_id})

    async def _shutdown(self, _app: web.Application) -> None:
        """Tell every websocket to close (1001) and wait for them, at most ``shutdown_seconds``."""
        self.connections.shutdown()
        deadline = time.monotonic() + self.settings.shutdown_seconds
        while self.connections.closing and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.stream.stop()

    async def _cleanup(self, _app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        if self.fanout is not None:
            await loop.run_in_executor(None, self.fanout.stop)
        await self.store.close()
