"""Real-time data through the gateway, the way an application gets it: a device publishes over MQTT, and a
websocket client with a ticket (Kafka WS) and socket.io clients (dojot's data broker) receive the message;
notifications reach their subscribers; a tenant never receives another tenant's data."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import pytest
import requests
import socketio
import websockets

from ondas.kafka import get_producer
from tests.e2e.helpers import api, mosquitto_pub
from tests.e2e.test_tutorial import create_device

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenant_b(platform):
    name = "rt" + uuid.uuid4().hex[:8]
    r = api(
        "POST",
        f"{platform.gateway}/auth/tenants",
        platform.token(),
        json={"tenant": name, "admin": {"username": f"{name}-admin", "passwd": "secret-pass-1"}},
    )
    assert r.status_code == 201, r.text
    return name, platform.token(f"{name}-admin", "secret-pass-1")


def ws_base(platform) -> str:
    return platform.gateway.replace("http://", "ws://", 1)


def ticket(platform, token: str) -> str:
    r = api("GET", f"{platform.gateway}/kafka-ws/v1/ticket", token)
    assert r.status_code == 200, r.text
    value = r.json()["ticket"]
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    return str(value)


def socketio_token(platform, token: str) -> str:
    r = api("GET", f"{platform.gateway}/stream/socketio", token)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


class SioClient:
    """A python-socketio client through the gateway that records the events it is told to."""

    def __init__(self, *events: str) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = {e: [] for e in events}
        for event in events:
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Any:
        async def record(data: Any) -> None:
            self.received[event].append(data)

        return record

    async def connect(self, platform, token: str, subject: str | None = None) -> SioClient:
        query = f"token={socketio_token(platform, token)}" + (f"&subject={subject}" if subject else "")
        await self.sio.connect(f"{platform.gateway}?{query}", transports=["websocket"], wait_timeout=15)
        return self


async def until(sent: Any, received: Any, timeout: float = 60.0, every: float = 1.0) -> None:
    """Call ``sent()`` (publish) every ``every`` seconds until ``received()`` holds: the subscription may take a
    moment to reach the fan-out, so a message published before it did is not waited for."""
    async with asyncio.timeout(timeout):
        while True:
            await asyncio.to_thread(sent)
            deadline = time.monotonic() + every
            while time.monotonic() < deadline:
                if received():
                    return
                await asyncio.sleep(0.02)


def test_websocket_and_socketio_receive_an_mqtt_publication(platform):
    token = platform.token()
    _, device = create_device(platform, token, label="live")
    identity = f"admin:{device}"
    seq = iter(range(1_000_000))

    def publish() -> None:
        mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": next(seq)}))

    async def run() -> None:
        url = (
            f"{ws_base(platform)}/kafka-ws/v1/topics/admin.device-data?ticket={ticket(platform, token)}"
            f"&fields=metadata/deviceid,attrs&where=metadata.deviceid=in:{device};"
        )
        frames: list[Any] = []
        async with websockets.connect(url, open_timeout=15) as ws:

            async def read() -> None:
                async for frame in ws:
                    frames.append(json.loads(frame))

            reader = asyncio.create_task(read())
            on_all = await SioClient("all", device).connect(platform, token)
            try:
                await until(publish, lambda: frames and on_all.received["all"] and on_all.received[device])
            finally:
                reader.cancel()
                await on_all.sio.disconnect()
        # The websocket got the selected fields of this device's messages only (the where clause).
        assert frames and all(f == {"metadata": {"deviceid": device}, "attrs": f["attrs"]} for f in frames)
        assert all(set(f["attrs"]) == {"temperature"} for f in frames)
        # socket.io: the whole device-data message, on `all` and on the device's own event.
        message = on_all.received[device][0]
        assert message["metadata"]["deviceid"] == device and message["metadata"]["tenant"] == "admin"
        assert "temperature" in message["attrs"]
        assert all(m["metadata"]["tenant"] == "admin" for m in on_all.received["all"])

    asyncio.run(run())


def test_notifications_reach_their_subscribers(platform):
    token = platform.token()
    producer = get_producer(platform.status["kafka_bootstrap"])
    note_id = uuid.uuid4().hex

    def notify() -> None:
        note = {"msgID": note_id, "timestamp": int(time.time() * 1000), "message": "door open",
                "metaAttrsFilter": {"level": 3}, "subject": "user_notification"}  # fmt: skip
        producer.send_and_wait("admin.dojot.notifications", json.dumps(note).encode(), key=None)

    async def run() -> None:
        notes = await SioClient("notification", "all").connect(platform, token, subject="dojot.notifications")
        url = f"{ws_base(platform)}/kafka-ws/v1/topics/admin.dojot.notifications?ticket={ticket(platform, token)}"
        frames: list[Any] = []
        async with websockets.connect(url, open_timeout=15) as ws:

            async def read() -> None:
                async for frame in ws:
                    frames.append(json.loads(frame))

            reader = asyncio.create_task(read())
            try:
                await until(notify, lambda: frames and notes.received["notification"])
            finally:
                reader.cancel()
                await notes.sio.disconnect()
        assert {n["msgID"] for n in notes.received["notification"]} == {note_id}
        assert notes.received["notification"][0]["message"] == "door open"
        assert notes.received["all"] == []  # a notification subscriber is not in the device-data room
        assert {f["msgID"] for f in frames} == {note_id}

    asyncio.run(run())


def test_a_tenant_gets_only_its_own_data(platform, tenant_b):
    a_token = platform.token()
    b_name, b_token = tenant_b
    _, a_device = create_device(platform, a_token, label="rt-a")
    _, b_device = create_device(platform, b_token, label="rt-b")
    rounds = iter(range(1_000_000))

    def publish_both() -> None:
        n = next(rounds)
        for identity in (f"admin:{a_device}", f"{b_name}:{b_device}"):
            mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": n}))

    async def run() -> tuple[SioClient, SioClient, list[Any]]:
        # B's ticket on A's topic: 4403, through the gateway.
        url = f"{ws_base(platform)}/kafka-ws/v1/topics/admin.device-data?ticket={ticket(platform, b_token)}"
        async with websockets.connect(url, open_timeout=15) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(15):
                    await ws.recv()
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4403
        a_sio = await SioClient("all", b_device).connect(platform, a_token)
        b_sio = await SioClient("all", a_device).connect(platform, b_token)
        b_url = f"{ws_base(platform)}/kafka-ws/v1/topics/{b_name}.device-data?ticket={ticket(platform, b_token)}"
        b_frames: list[Any] = []
        async with websockets.connect(b_url, open_timeout=15) as b_ws:

            async def read() -> None:
                async for frame in b_ws:
                    b_frames.append(json.loads(frame))

            reader = asyncio.create_task(read())
            try:
                await until(
                    publish_both,
                    lambda: len(a_sio.received["all"]) >= 3 and len(b_sio.received["all"]) >= 3 and len(b_frames) >= 3,
                    timeout=90,
                )
            finally:
                reader.cancel()
                await a_sio.sio.disconnect()
                await b_sio.sio.disconnect()
        return a_sio, b_sio, b_frames

    a_sio, b_sio, b_frames = asyncio.run(run())
    assert {m["metadata"]["tenant"] for m in a_sio.received["all"]} == {"admin"}
    assert {m["metadata"]["tenant"] for m in b_sio.received["all"]} == {b_name}
    assert {m["metadata"]["tenant"] for m in b_frames} == {b_name}
    assert a_sio.received[b_device] == [] and b_sio.received[a_device] == []


def test_gateway_routes_of_kafka_ws(platform):
    token = platform.token()
    # The ticket, socket.io token and topic routes need a token; the websocket endpoint is for websockets only.
    for path in ("/kafka-ws/v1/ticket", "/stream/socketio", "/topic/device-data"):
        assert api("GET", f"{platform.gateway}{path}").status_code == 401, path
    r = api("GET", f"{platform.gateway}/topic/device-data", token)
    assert r.status_code == 200 and r.json() == {"topic": "admin.device-data"}, r.text
    r = requests.get(f"{platform.gateway}/kafka-ws/v1/topics/admin.device-data?ticket={'0' * 64}", timeout=10)
    assert r.status_code == 426, r.text
    # A used ticket is refused (4401).
    used = ticket(platform, token)

    async def twice() -> int | None:
        url = f"{ws_base(platform)}/kafka-ws/v1/topics/admin.device-data?ticket={used}"
        async with websockets.connect(url, open_timeout=15):
            pass
        async with websockets.connect(url, open_timeout=15) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(15):
                    await ws.recv()
            return ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None

    assert asyncio.run(twice()) == 4401
