"""dojot's data-broker real-time interface with a real python-socketio client: ``all``, ``<device-id>``,
notifications with ``subject=dojot.notifications``, the one-time token, and tenant isolation while both tenants
publish at once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import socketio

from tests.integration.kafka_ws.helpers import KafkaWsProcess, device_message, publish, publish_many

pytestmark = pytest.mark.integration


class Client:
    """A socket.io client that records every event it receives."""

    def __init__(self, *events: str) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = {e: [] for e in events}
        for event in events:
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Any:
        async def record(data: Any) -> None:
            self.received[event].append(data)

        return record

    async def connect(self, proc: KafkaWsProcess, token: str, subject: str | None = None) -> None:
        query = f"token={token}" + (f"&subject={subject}" if subject else "")
        await self.sio.connect(f"{proc.base}?{query}", transports=["websocket"], wait_timeout=10)

    async def wait(self, event: str, count: int, timeout: float = 15.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.received[event]) < count:
                await asyncio.sleep(0.02)
        return self.received[event]


def test_all_device_and_notifications(kws: KafkaWsProcess, tokens: Any, tenants: Any, kafka_bootstrap: str) -> None:
    a, _ = tenants

    before = kws.connections(a, "socketio")

    async def run() -> None:
        data = Client("all", "sio1", "sio2", "notification")
        notes = Client("all", "sio1", "notification")
        await data.connect(kws, kws.socketio_token(tokens.token(a)))
        await notes.connect(kws, kws.socketio_token(tokens.token(a)), subject="dojot.notifications")
        await asyncio.to_thread(kws.wait_connections, a, before + 2, "socketio")
        m1, m2, m3 = (device_message(a, d, n=i) for i, d in enumerate(["sio1", "sio2", "sio1"]))
        await asyncio.to_thread(publish_many, kafka_bootstrap, f"{a}.device-data", [m1, m2, m3])
        note = {"msgId": "n1", "metaAttrsFilter": {}, "message": "door open", "subject": "user_notification"}
        await asyncio.to_thread(publish, kafka_bootstrap, f"{a}.dojot.notifications", note)
        assert await data.wait("all", 3) == [m1, m2, m3]
        assert await data.wait("sio1", 2) == [m1, m3]
        assert await data.wait("sio2", 1) == [m2]
        assert await notes.wait("notification", 1) == [note]
        await asyncio.sleep(0.3)
        assert data.received["notification"] == [] and notes.received["all"] == notes.received["sio1"] == []
        await data.sio.disconnect()
        await notes.sio.disconnect()

    asyncio.run(run())


def test_token_is_one_time(kws: KafkaWsProcess, tokens: Any, tenants: Any) -> None:
    a, _ = tenants

    async def run() -> None:
        token = kws.socketio_token(tokens.token(a))
        first = Client("all")
        await first.connect(kws, token)
        await first.sio.disconnect()
        for bad in (token, "not-a-token", ""):
            again = Client("all")
            with pytest.raises(socketio.exceptions.ConnectionError):
                await again.connect(kws, bad)

    asyncio.run(run())


def test_tenant_isolation_while_both_publish(
    kws: KafkaWsProcess, tokens: Any, tenants: Any, kafka_bootstrap: str
) -> None:
    a, b = tenants
    per_tenant = 200

    async def run() -> None:
        clients = {a: Client("all"), b: Client("all")}
        for tenant, client in clients.items():
            before = kws.connections(tenant, "socketio")
            await client.connect(kws, kws.socketio_token(tokens.token(tenant)))
            await asyncio.to_thread(kws.wait_connections, tenant, before + 1, "socketio")

        def publish_for(tenant: str) -> None:
            msgs = [device_message(tenant, "iso", seq=i) for i in range(per_tenant)]
            publish_many(kafka_bootstrap, f"{tenant}.device-data", msgs)

        threads = [threading.Thread(target=publish_for, args=(t,)) for t in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for tenant, client in clients.items():
            got = await client.wait("all", per_tenant)
            assert {m["metadata"]["tenant"] for m in got} == {tenant}
            assert [m["attrs"]["seq"] for m in got] == list(range(per_tenant))
        await asyncio.sleep(0.3)
        for tenant, client in clients.items():
            assert len(client.received["all"]) == per_tenant
            assert all(m["metadata"]["tenant"] == tenant for m in client.received["all"])
            await client.sio.disconnect()

    asyncio.run(run())
