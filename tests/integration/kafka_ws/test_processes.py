"""Several kafka_ws processes side by side each deliver every message to their own clients (each process has a
consumer group of its own); a tenant created at run time is followed without a restart; websocket clients of two
tenants publishing at once see only their own tenant's messages."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from ondas.topics import TENANCY_TOPIC
from tests.integration.kafka_ws.helpers import KafkaWsProcess, device_message, publish, publish_many, receive, topic_url
from tests.integration.kafka_ws.test_socketio import Client

pytestmark = pytest.mark.integration


def test_two_processes_both_deliver(
    kws: KafkaWsProcess,
    start_kafka_ws: Callable[..., KafkaWsProcess],
    tokens: Any,
    tenants: Any,
    kafka_bootstrap: str,
) -> None:
    a, _ = tenants
    other = start_kafka_ws()
    topic = f"{a}.device-data"

    before = {proc.port: proc.connections(a) for proc in (kws, other)}
    before_sio = other.connections(a, "socketio")

    async def run() -> None:
        sockets = [
            await websockets.connect(topic_url(proc, topic, proc.ticket(tokens.token(a)), fields="attrs"))
            for proc in (kws, other, kws, other)
        ]
        sio = Client("all")
        await sio.connect(other, other.socketio_token(tokens.token(a)))
        for proc in (kws, other):
            await asyncio.to_thread(proc.wait_connections, a, before[proc.port] + 2)
        await asyncio.to_thread(other.wait_connections, a, before_sio + 1, "socketio")
        msgs = [device_message(a, "two", seq=i) for i in range(50)]
        await asyncio.to_thread(publish_many, kafka_bootstrap, topic, msgs)
        for ws in sockets:
            assert await receive(ws, 50) == [{"attrs": {"seq": i}} for i in range(50)]
            await ws.close()
        assert await sio.wait("all", 50) == msgs
        await sio.sio.disconnect()

    asyncio.run(run())
    assert kws.metric("kafka_ws_messages_sent_total", tenant=a, interface="websocket") >= 100
    assert other.metric("kafka_ws_messages_sent_total", tenant=a, interface="socketio") >= 50


def test_tenant_created_at_run_time(kws: KafkaWsProcess, tokens: Any, kafka_bootstrap: str) -> None:
    newcomer = "kwsnew" + uuid.uuid4().hex[:6]
    publish(kafka_bootstrap, TENANCY_TOPIC, {"type": "CREATE", "tenant": newcomer})
    topic = f"{newcomer}.device-data"

    async def run() -> None:
        async with websockets.connect(topic_url(kws, topic, kws.ticket(tokens.token(newcomer)))) as ws:
            await asyncio.to_thread(kws.wait_connections, newcomer, 1)
            message = device_message(newcomer, "n1", temperature=1)
            await asyncio.to_thread(publish, kafka_bootstrap, topic, message)
            assert await receive(ws, 1, timeout=30) == [message]

    asyncio.run(run())


def test_websocket_isolation_while_both_publish(
    kws: KafkaWsProcess, tokens: Any, tenants: Any, kafka_bootstrap: str
) -> None:
    a, b = tenants
    count = 200
    before = {t: kws.connections(t) for t in (a, b)}

    async def run() -> None:
        sockets = {
            t: await websockets.connect(topic_url(kws, f"{t}.device-data", kws.ticket(tokens.token(t)))) for t in (a, b)
        }
        for t in (a, b):
            await asyncio.to_thread(kws.wait_connections, t, before[t] + 1)

        def publish_for(tenant: str) -> None:
            publish_many(
                kafka_bootstrap, f"{tenant}.device-data", [device_message(tenant, "w", seq=i) for i in range(count)]
            )

        threads = [threading.Thread(target=publish_for, args=(t,)) for t in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for tenant, ws in sockets.items():
            got = await receive(ws, count)
            assert {m["metadata"]["tenant"] for m in got} == {tenant}
            assert [m["attrs"]["seq"] for m in got] == list(range(count))
            await ws.close()

    asyncio.run(run())
