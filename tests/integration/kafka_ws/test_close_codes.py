"""Every close code of kafka_ws, provoked on the real process with a real websocket client (the slow client's
4429 is in test_slow_client.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import websockets

from kafka_ws.models import TicketPayload, sign_payload
from kafka_ws.store_redis import TICKET_PREFIX
from ondasctl.ports import free_port
from tests.integration.kafka_ws.helpers import KafkaWsProcess, close_code, close_code_of, topic_url
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("where", "code", "name"),
    [
        ("a=1", 4000, "INVALID_SYNTAX"),
        ("=1;", 4000, "INVALID_SYNTAX"),
        ("a=like:1;", 4001, "INVALID_OPERATOR"),
        ("a=in:x\\y;", 4002, "INVALID_ESCAPE_VALUE"),
        ("a=gte:1,2;", 4003, "INVALID_OPERATOR_ARITY"),
        ("a=lt:ten;", 4004, "INVALID_VALUE"),
        ("a=bool:yes;", 4004, "INVALID_VALUE"),
    ],
)
def test_where_errors(kws: KafkaWsProcess, tokens: Any, tenants: Any, where: str, code: int, name: str) -> None:
    a, _ = tenants
    url = topic_url(kws, f"{a}.device-data", kws.ticket(tokens.token(a)), where=where)
    got, reason = close_code(url)
    assert (got, reason.split(":")[0]) == (code, name)


def test_bad_fields_is_invalid_syntax(kws: KafkaWsProcess, tokens: Any, tenants: Any) -> None:
    a, _ = tenants
    url = topic_url(kws, f"{a}.device-data", kws.ticket(tokens.token(a)), fields="attrs(temperature")
    assert close_code(url)[0] == 4000


def test_invalid_pathname_is_4400(kws: KafkaWsProcess, tokens: Any, tenants: Any) -> None:
    a, _ = tenants
    assert close_code(topic_url(kws, "no-dot-topic", kws.ticket(tokens.token(a))))[0] == 4400
    assert close_code(f"{kws.ws_base}/kafka-ws/v1/nothing/here")[0] == 4400


def test_invalid_tickets_are_4401(kws: KafkaWsProcess, tokens: Any, tenants: Any, redis_url: str) -> None:
    a, _ = tenants
    topic = f"{a}.device-data"
    assert close_code(topic_url(kws, topic, None))[0] == 4401  # no ticket
    assert close_code(topic_url(kws, topic, "abc"))[0] == 4401  # not 64 hex
    assert close_code(topic_url(kws, topic, "0" * 64))[0] == 4401  # never issued
    # A payload not signed with the service's secret (written to Redis by someone else) is refused.
    forged = "f" * 64
    payload = sign_payload(TicketPayload(a, "mallory", time.time() + 60), b"not-the-secret")
    redis.Redis.from_url(redis_url).set(TICKET_PREFIX + forged, payload, ex=60)
    code, reason = close_code(topic_url(kws, topic, forged))
    assert code == 4401 and "verify" in reason


def test_other_tenants_topic_is_4403(kws: KafkaWsProcess, tokens: Any, tenants: Any) -> None:
    a, b = tenants
    code, reason = close_code(topic_url(kws, f"{a}.device-data", kws.ticket(tokens.token(b))))
    assert (code, reason.split(":")[0]) == (4403, "FORBIDDEN_TOPIC")
    assert close_code(topic_url(kws, "dojot-management.dojot.tenancy", kws.ticket(tokens.token(a))))[0] == 4403
    # The refused ticket was used: it cannot be tried again on the right topic.
    ticket = kws.ticket(tokens.token(b))
    assert close_code(topic_url(kws, f"{a}.device-data", ticket))[0] == 4403
    assert close_code(topic_url(kws, f"{b}.device-data", ticket))[0] == 4401


def test_lifetime_4408_and_expired_ticket(
    start_kafka_ws: Callable[..., KafkaWsProcess], tokens: Any, tenants: Any
) -> None:
    a, _ = tenants
    short = start_kafka_ws(KAFKA_WS_CONNECTION_MAX_LIFETIME_SECONDS="1", KAFKA_WS_TICKET_TTL_SECONDS="1")
    code, reason = close_code(topic_url(short, f"{a}.device-data", short.ticket(tokens.token(a))))
    assert (code, reason.split(":")[0]) == (4408, "EXPIRED_CONNECTION")
    ticket = short.ticket(tokens.token(a))
    time.sleep(1.5)  # let the ticket's TTL run out
    assert close_code(topic_url(short, f"{a}.device-data", ticket))[0] == 4401
    assert short.metric("kafka_ws_connections_closed_total", code="4408") >= 1


def test_internal_error_is_4999(start_kafka_ws: Callable[..., KafkaWsProcess], tenants: Any) -> None:
    a, _ = tenants
    # Redis is not there: the ticket cannot be checked.
    broken = start_kafka_ws(ready=False, KAFKA_WS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    code, reason = close_code(topic_url(broken, f"{a}.device-data", "a" * 64))
    assert (code, reason.split(":")[0]) == (4999, "INTERNAL")


def test_shutdown_closes_with_going_away(
    start_kafka_ws: Callable[..., KafkaWsProcess], tokens: Any, tenants: Any
) -> None:
    a, _ = tenants
    proc = start_kafka_ws()

    async def run() -> tuple[int | None, str]:
        task = asyncio.create_task(close_code_of(topic_url(proc, f"{a}.device-data", proc.ticket(tokens.token(a)))))
        await asyncio.to_thread(proc.wait_connections, a, 1)
        assert await asyncio.to_thread(proc.stop) == 0
        return await task

    assert asyncio.run(run())[0] == 1001
    wait_for(lambda: proc.proc.poll() is not None, 10, "the process to exit")


def test_client_close_is_clean(kws: KafkaWsProcess, tokens: Any, tenants: Any) -> None:
    a, _ = tenants

    async def run() -> None:
        async with websockets.connect(topic_url(kws, f"{a}.device-data", kws.ticket(tokens.token(a)))) as ws:
            await ws.close(1000)
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000

    asyncio.run(run())
