"""kafka_ws's HTTP routes on the real process: tickets (64 hex, signed payload in Redis with a TTL, single use),
the socket.io token, the topic of a subject, the 426 of a non-websocket request, health and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import requests
import websockets

from kafka_ws.store_redis import SOCKETIO_PREFIX, TICKET_PREFIX
from tests.integration.kafka_ws.helpers import KafkaWsProcess, close_code, topic_url

pytestmark = pytest.mark.integration


def test_ticket_is_64_hex_stored_signed_with_ttl(
    kws: KafkaWsProcess, tokens: Any, tenants: Any, redis_url: str
) -> None:
    a, _ = tenants
    ticket = kws.ticket(tokens.token(a, "alice"))
    assert len(ticket) == 64 and all(c in "0123456789abcdef" for c in ticket)
    r = redis.Redis.from_url(redis_url)
    stored = r.get(TICKET_PREFIX + ticket)
    assert stored is not None and b"." in stored  # <payload>.<signature>
    ttl = r.ttl(TICKET_PREFIX + ticket)
    assert 0 < ttl <= 60
    assert kws.ticket(tokens.token(a, "alice")) != ticket


def test_ticket_and_token_need_a_valid_token(kws: KafkaWsProcess, tokens: Any, tenants: Any) -> None:
    a, _ = tenants
    for path in ("/kafka-ws/v1/ticket", "/stream/socketio", "/topic/device-data"):
        assert requests.get(kws.base + path, timeout=10).status_code == 401
        bad = {"Authorization": "Bearer not-a-jwt"}
        assert requests.get(kws.base + path, headers=bad, timeout=10).status_code == 401
        expired = {"Authorization": f"Bearer {tokens.token(a, ttl=-10)}"}
        assert requests.get(kws.base + path, headers=expired, timeout=10).status_code == 401


def test_ticket_is_single_use(kws: KafkaWsProcess, tokens: Any, tenants: Any, redis_url: str) -> None:
    a, _ = tenants
    ticket = kws.ticket(tokens.token(a))

    before = kws.connections(a)

    async def first() -> None:
        async with websockets.connect(topic_url(kws, f"{a}.device-data", ticket)) as ws:
            kws.wait_connections(a, before + 1)
            assert ws.close_code is None

    asyncio.run(first())
    assert redis.Redis.from_url(redis_url).get(TICKET_PREFIX + ticket) is None
    code, reason = close_code(topic_url(kws, f"{a}.device-data", ticket))
    assert code == 4401 and reason.startswith("INVALID_TICKET")


def test_socketio_token_and_topic_of_subject(kws: KafkaWsProcess, tokens: Any, tenants: Any, redis_url: str) -> None:
    a, _ = tenants
    token = kws.socketio_token(tokens.token(a))
    assert len(token) == 36 and token.count("-") == 4
    slash = requests.get(
        f"{kws.base}/stream/socketio/", headers={"Authorization": f"Bearer {tokens.token(a)}"}, timeout=10
    )
    assert slash.status_code == 200 and slash.json()["token"] != token
    assert redis.Redis.from_url(redis_url).ttl(SOCKETIO_PREFIX + token) > 0
    headers = {"Authorization": f"Bearer {tokens.token(a)}"}
    resp = requests.get(f"{kws.base}/topic/device-data", headers=headers, timeout=10)
    assert resp.status_code == 200 and resp.json() == {"topic": f"{a}.device-data"}
    resp = requests.get(f"{kws.base}/topic/dojot.notifications", headers=headers, timeout=10)
    assert resp.json() == {"topic": f"{a}.dojot.notifications"}


def test_plain_http_on_the_websocket_route_is_426(kws: KafkaWsProcess, tenants: Any) -> None:
    a, _ = tenants
    resp = requests.get(f"{kws.base}/kafka-ws/v1/topics/{a}.device-data?ticket=x", timeout=10)
    assert resp.status_code == 426
    assert "non-WebSocket" in resp.text


def test_health_and_metrics(kws: KafkaWsProcess) -> None:
    assert requests.get(f"{kws.base}/health/live", timeout=10).json()["status"] == "alive"
    ready = requests.get(f"{kws.base}/health/ready", timeout=10)
    assert ready.status_code == 200
    assert set(ready.json()["checks"]) >= {"redis", "consumer"}
    text = requests.get(f"{kws.base}/metrics", timeout=10).text
    for name in ("kafka_ws_connections", "kafka_ws_messages_sent_total", "kafka_ws_connections_closed_total"):
        assert name in text
