"""A client that reads nothing is closed (4429) and counted, while 100 other clients of the same process keep
receiving every message."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from ondas.kafka import get_producer
from tests.integration.kafka_ws.helpers import KafkaWsProcess, topic_url

pytestmark = pytest.mark.integration

FAST_CLIENTS = 100
PAD = "x" * 20000  # big messages fill the slow client's buffers fast; fast clients select a few bytes of each


async def _run(proc: KafkaWsProcess, tokens: Any, tenant: str, bootstrap: str) -> None:
    topic = f"{tenant}.device-data"
    fast = [
        await websockets.connect(topic_url(proc, topic, proc.ticket(tokens.token(tenant)), fields="attrs/seq"))
        for _ in range(FAST_CLIENTS)
    ]
    # The slow client: a small receive buffer, at most one message buffered by the library, no compression (the
    # padding would shrink to nothing), and it never reads.
    raw = socket.create_connection(("127.0.0.1", proc.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    slow = await websockets.connect(
        topic_url(proc, topic, proc.ticket(tokens.token(tenant))), sock=raw, max_queue=1, compression=None
    )
    await asyncio.to_thread(proc.wait_connections, tenant, FAST_CLIENTS + 1)

    received: list[list[int]] = [[] for _ in fast]

    async def read(i: int, ws: Any) -> None:
        async for frame in ws:
            received[i].append(json.loads(frame)["attrs"]["seq"])

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(fast)]
    producer = get_producer(bootstrap)
    published = 0

    def publish_chunk(n: int) -> None:
        nonlocal published
        futures = []
        for _ in range(n):
            message = {"metadata": {"tenant": tenant, "deviceid": "slow"}, "attrs": {"seq": published}, "pad": PAD}
            futures.append(producer.send(topic, json.dumps(message).encode()))
            published += 1
        for fut in futures:
            fut.result(30)

    try:
        closed = 0.0
        while closed < 1 and published < 5000:
            await asyncio.to_thread(publish_chunk, 50)
            await asyncio.sleep(0.05)
            closed = await asyncio.to_thread(proc.metric, "kafka_ws_connections_closed_total", code="4429")
        assert closed >= 1, "the slow client was never closed"
        await asyncio.to_thread(publish_chunk, 50)  # after the slow client is gone, everyone else still receives
        async with asyncio.timeout(60):
            while any(len(r) < published for r in received):
                await asyncio.sleep(0.05)
        assert all(r == list(range(published)) for r in received)
        assert await asyncio.to_thread(proc.metric, "kafka_ws_slow_clients_total", tenant=tenant) == 1
        assert await asyncio.to_thread(proc.metric, "kafka_ws_connections", tenant=tenant) == FAST_CLIENTS
    finally:
        for task in readers:
            task.cancel()
        for ws in fast:
            await ws.close()
        slow.transport.abort()


def test_slow_client_closed_others_keep_receiving(
    start_kafka_ws: Callable[..., KafkaWsProcess], tokens: Any, tenants: Any, kafka_bootstrap: str
) -> None:
    proc = start_kafka_ws(KAFKA_WS_QUEUE_SIZE="200", KAFKA_WS_KAFKA_BATCH_SIZE="50")
    asyncio.run(_run(proc, tokens, tenants[1], kafka_bootstrap))


SIO_FAST_CLIENTS = 5
SIO_PAD = "y" * 5000  # socket.io sends whole messages: smaller ones, so the fast clients of this test keep up


async def _run_socketio(proc: KafkaWsProcess, tokens: Any, tenant: str, bootstrap: str) -> None:
    from tests.integration.kafka_ws.test_socketio import Client

    topic = f"{tenant}.device-data"
    before = proc.connections(tenant, "socketio")
    fast = [Client("all") for _ in range(SIO_FAST_CLIENTS)]
    for client in fast:
        await client.connect(proc, proc.socketio_token(tokens.token(tenant)))
    # The slow client speaks Engine.IO/Socket.IO by hand over a websocket, joins, then never reads again.
    raw = socket.create_connection(("127.0.0.1", proc.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    token = proc.socketio_token(tokens.token(tenant))
    slow = await websockets.connect(
        f"{proc.ws_base}/socket.io/?EIO=4&transport=websocket&token={token}", sock=raw, max_queue=1, compression=None
    )
    assert (await slow.recv()).startswith("0")  # engine.io open
    await slow.send("40")  # socket.io connect to "/"
    assert (await slow.recv()).startswith("40")
    await asyncio.to_thread(proc.wait_connections, tenant, before + SIO_FAST_CLIENTS + 1, "socketio")

    producer = get_producer(bootstrap)
    published = 0

    def publish_chunk(n: int) -> None:
        nonlocal published
        futures = []
        for _ in range(n):
            message = {
                "metadata": {"tenant": tenant, "deviceid": "sioslow"},
                "attrs": {"seq": published},
                "pad": SIO_PAD,
            }
            futures.append(producer.send(topic, json.dumps(message).encode()))
            published += 1
        for fut in futures:
            fut.result(30)

    try:
        closed = 0.0
        while closed < 1 and published < 4000:
            await asyncio.to_thread(publish_chunk, 20)
            await asyncio.sleep(0.05)
            closed = await asyncio.to_thread(proc.metric, "kafka_ws_slow_clients_total", tenant=tenant)
        assert closed >= 1, "the slow socket.io client was never disconnected"
        await asyncio.to_thread(publish_chunk, 20)
        assert all(c.sio.connected for c in fast), "a fast client was disconnected"
        for client in fast:
            got = await client.wait("all", published, timeout=60)
            assert [m["attrs"]["seq"] for m in got] == list(range(published))
        assert await asyncio.to_thread(proc.connections, tenant, "socketio") == before + SIO_FAST_CLIENTS
    finally:
        for client in fast:
            await client.sio.disconnect()
        slow.transport.abort()


def test_slow_socketio_client_disconnected_others_keep_receiving(
    start_kafka_ws: Callable[..., KafkaWsProcess], tokens: Any, tenants: Any, kafka_bootstrap: str
) -> None:
    proc = start_kafka_ws(KAFKA_WS_SOCKETIO_MAX_BACKLOG="100")
    asyncio.run(_run_socketio(proc, tokens, tenants[0], kafka_bootstrap))
