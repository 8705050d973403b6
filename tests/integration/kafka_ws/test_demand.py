"""kafka_ws reads only the topics someone listens to: no partition is assigned while nobody is connected, a
websocket or a socket.io room brings its topic in at once, the last listener leaving takes it out again (after
the linger), and what was published before anyone listened is never sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from ondas import kafka
from tests.integration.kafka_ws.helpers import KafkaWsProcess, device_message, publish, receive, topic_url
from tests.integration.kafka_ws.test_socketio import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ASSIGNED = "kafka_ws_partitions_assigned"


def test_only_listened_topics_are_read(
    start_kafka_ws: Callable[..., KafkaWsProcess], tokens: Any, tenants: Any, kafka_bootstrap: str
) -> None:
    a, b = tenants
    proc = start_kafka_ws(KAFKA_WS_LINGER_SECONDS="1")
    data_a, notes_b = f"{a}.device-data", f"{b}.dojot.notifications"
    kafka.ensure_topics(kafka_bootstrap, [notes_b])
    # Both tenants' device-data topics exist (the package's fixture created them): nobody listens, nothing read.
    assert proc.metric(ASSIGNED) == 0
    before = device_message(a, "early", seq=0)
    publish(kafka_bootstrap, data_a, before)

    def assigned(count: int) -> None:
        wait_for(lambda: proc.metric(ASSIGNED) == count, 30, f"{count} partitions assigned")

    async def run() -> None:
        async with websockets.connect(topic_url(proc, data_a, proc.ticket(tokens.token(a)))) as ws:
            await asyncio.to_thread(assigned, 1)
            sio = Client("notification")
            await sio.connect(proc, proc.socketio_token(tokens.token(b)), subject="dojot.notifications")
            await asyncio.to_thread(assigned, 2)
            after = device_message(a, "late", seq=1)
            await asyncio.to_thread(publish, kafka_bootstrap, data_a, after)
            await asyncio.to_thread(publish, kafka_bootstrap, notes_b, {"msgID": "n1", "metaAttrsFilter": {}})
            # The message published before the connection is within the consumer's backtrack, yet not sent.
            assert await receive(ws, 1) == [after]
            assert await sio.wait("notification", 1) == [{"msgID": "n1", "metaAttrsFilter": {}}]
            await sio.sio.disconnect()
            await asyncio.to_thread(assigned, 1)
        await asyncio.to_thread(assigned, 0)

    asyncio.run(run())


def test_a_topic_created_after_its_listener_arrived_is_read(
    kws: KafkaWsProcess, tokens: Any, tenants: Any, kafka_bootstrap: str
) -> None:
    """A tenant's first notification creates its topic (the producer's broker auto-creates it): the websocket
    that was already waiting gets it, and so does a socket.io client of the tenant's notifications."""
    a, _ = tenants
    topic = f"{a}.dojot.notifications-late{uuid.uuid4().hex[:6]}"
    note = {"msgID": "late-1", "timestamp": 1, "message": "first ever", "metaAttrsFilter": {}}

    async def run() -> None:
        async with websockets.connect(topic_url(kws, topic, kws.ticket(tokens.token(a)))) as ws:
            await asyncio.to_thread(kws.wait_connections, a, 1)
            await asyncio.to_thread(publish, kafka_bootstrap, topic, note)
            assert await receive(ws, 1, timeout=30) == [note]

    asyncio.run(run())
