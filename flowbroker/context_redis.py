"""The context store of the context nodes (tenant, flow and node layers) in Redis, shared by every worker. A value
is JSON under ``flowbroker:ctx:<layer key>``; :meth:`RedisContextStore.update` is an optimistic transaction (WATCH),
so two workers changing one context never lose an update."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from ondas.errors import Unavailable

PREFIX = "flowbroker:ctx:"


class RedisContextStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def close(self) -> None:
        self._redis.close()

    def ping(self) -> bool:
        return bool(self._redis.ping())

    def get(self, key: str) -> Any:
        try:
            raw = self._redis.get(PREFIX + key)
        except redis.RedisError as exc:
            raise Unavailable(f"the context store is unavailable: {exc}") from exc
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: Any) -> None:
        try:
            self._redis.set(PREFIX + key, json.dumps(value))
        except redis.RedisError as exc:
            raise Unavailable(f"the context store is unavailable: {exc}") from exc

    def update(self, key: str, change: Callable[[Any], tuple[Any, Any]]) -> Any:
        name = PREFIX + key
        outcome: list[Any] = []

        def transaction(pipe: Any) -> None:
            raw = pipe.get(name)
            new, result = change(None if raw is None else json.loads(raw))
            pipe.multi()
            pipe.set(name, json.dumps(new))
            outcome[:] = [result]

        try:
            self._redis.transaction(transaction, name)
        except redis.RedisError as exc:
            raise Unavailable(f"the context store is unavailable: {exc}") from exc
        return outcome[0]

    def drop_tenant(self, tenant: str) -> int:
        removed = 0
        for layer in ("tenant", "flow", "node"):
            for name in self._redis.scan_iter(match=f"{PREFIX}{layer}:{tenant}:*", count=500):
                removed += int(self._redis.delete(name))
        return removed
