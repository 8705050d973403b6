"""Tickets and socket.io tokens in Redis: ``<prefix><ticket>`` -> the signed payload, with a TTL; taken with
GETDEL, so a ticket is redeemed once even when two processes race for it."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ondas.errors import Unavailable

TICKET_PREFIX = "kafka-ws:ticket:"
SOCKETIO_PREFIX = "kafka-ws:socketio:"


class RedisTicketStore:
    def __init__(self, url: str) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    async def put(self, prefix: str, ticket: str, payload: bytes, ttl_seconds: int) -> None:
        try:
            stored = await self._redis.set(prefix + ticket, payload, ex=ttl_seconds, nx=True)
        except RedisError as exc:
            raise Unavailable(f"cannot store the ticket: Redis: {exc}") from exc
        if not stored:
            raise Unavailable("a ticket of that value exists already; ask again")

    async def take(self, prefix: str, ticket: str) -> bytes | None:
        """The payload stored for ``ticket``, removed in the same step; None when there is none (never issued,
        expired, or taken already)."""
        try:
            value = await self._redis.getdel(prefix + ticket)
        except RedisError as exc:
            raise Unavailable(f"cannot read the ticket: Redis: {exc}") from exc
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self._redis.aclose()
