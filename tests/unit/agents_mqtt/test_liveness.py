import asyncio
import json
from concurrent.futures import Future

import pytest

from agents.core.cache import DeviceCache
from agents.mqtt.liveness import LivenessBridge, LivenessTracker, LogLine, parse_log_line
from ondas.contracts import DeviceLiveness
from ondas.errors import Unavailable

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000


def connect(cid: str, user: str | None) -> str:
    u = f", u'{user}'" if user is not None else ""
    return f"1795304776: New client connected from 127.0.0.1:43690 as {cid} (p5, c1, k60{u})."


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (connect("cid1", "admin:efac"), LogLine("connect", "cid1", "admin:efac")),
        (connect("cid1", None), LogLine("connect", "cid1", None)),
        # A client id imitating the username part cannot pass for a username.
        (connect("x (p2, c1, k60, u'victim:d')", None), LogLine("connect", "x (p2, c1, k60, u'victim:d')", None)),
        (
            "New client connected from 127.0.0.1:1 as a b (p2, c0, k0, u'admin:efac').",
            LogLine("connect", "a b", "admin:efac"),
        ),
        ("1: Client cid1 disconnected.", LogLine("end", "cid1", reason="disconnected")),
        ("Client cid1 closed its connection.", LogLine("end", "cid1", reason="connection_lost")),
        ("Client cid1 has exceeded timeout, disconnecting.", LogLine("end", "cid1", reason="keepalive_timeout")),
        ("Client cid1 been disconnected by administrative action.", LogLine("end", "cid1", reason="kicked")),
        ("Socket error on client cid1, disconnecting.", LogLine("end", "cid1", reason="connection_lost")),
        ("Client cid1 disconnected due to malformed packet.", LogLine("end", "cid1", reason="connection_lost")),
        ("New connection from 127.0.0.1:43690 on port 1883.", None),
        ("Saving in-memory database to /x.", None),
        ("", None),
    ],
)
def test_parse_log_line(line, expected):
    assert parse_log_line(line) == expected


class Recorder:
    def __init__(self, unique: str) -> None:
        self.cache = DeviceCache()
        self.cache.replace_tenant(unique, [{"id": "efac"}, {"id": "b0b"}])
        self.events: list[DeviceLiveness] = []
        self.tracker = LivenessTracker(self.cache, self.events.append, clock=lambda: NOW)

    def seen(self) -> list[tuple[str, str, str]]:
        return [(e.metadata.deviceid, e.event, e.reason) for e in self.events]


def test_connect_and_ends(unique):
    r = Recorder(unique)
    r.tracker.handle(connect("c1", f"{unique}:efac"))
    r.tracker.handle("Client c1 disconnected.")
    r.tracker.handle(connect("c2", f"{unique}:b0b"))
    r.tracker.handle("Client c2 closed its connection.")
    r.tracker.handle(connect("c2", f"{unique}:b0b"))
    r.tracker.handle("Client c2 has exceeded timeout, disconnecting.")
    assert r.seen() == [
        ("efac", "online", "connected"),
        ("efac", "offline", "disconnected"),
        ("b0b", "online", "connected"),
        ("b0b", "offline", "connection_lost"),
        ("b0b", "online", "connected"),
        ("b0b", "offline", "keepalive_timeout"),
    ]
    stamps = [e.metadata.timestamp for e in r.events if e.metadata.deviceid == "b0b"]
    assert stamps == sorted(set(stamps))  # strictly increasing per device
    assert r.tracker.online() == frozenset()


def test_offline_only_when_the_last_connection_ends(unique):
    r = Recorder(unique)
    r.tracker.handle(connect("c1", f"{unique}:efac"))
    r.tracker.handle(connect("c2", f"{unique}:efac"))
    r.tracker.handle("Client c1 disconnected.")
    assert r.tracker.online() == {(unique, "efac")}
    r.tracker.handle("Client c2 disconnected.")
    assert r.seen() == [
        ("efac", "online", "connected"),
        ("efac", "online", "connected"),
        ("efac", "offline", "disconnected"),
    ]


def test_a_client_id_taken_by_another_device(unique):
    r = Recorder(unique)
    r.tracker.handle(connect("c1", f"{unique}:efac"))
    r.tracker.handle(connect("c1", f"{unique}:b0b"))
    assert r.seen() == [
        ("efac", "online", "connected"),
        ("efac", "offline", "taken_over"),
        ("b0b", "online", "connected"),
    ]


@pytest.mark.parametrize(
    "user",
    [None, "ondas-agent", "other:efac", "{t}:ghost", "{t}:bad/id"],
    ids=["anon", "agent", "tenant", "ghost", "bad"],
)
def test_other_clients_are_ignored(unique, user):
    r = Recorder(unique)
    r.tracker.handle(connect("c1", user.format(t=unique) if user else None))
    r.tracker.handle("Client c1 disconnected.")
    r.tracker.handle("Client never-seen closed its connection.")
    assert r.events == []


class FlakyProducer:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, bytes, str]] = []

    def send(self, topic, value, key=None, headers=None) -> Future:
        fut: Future = Future()
        if self.failures:
            self.failures -= 1
            fut.set_exception(Unavailable("no broker"))
        else:
            self.sent.append((topic, value, key))
            fut.set_result(None)
        return fut


def test_bridge_publishes_and_retries_until_kafka_accepts(unique):
    cache = DeviceCache()
    cache.replace_tenant(unique, [{"id": "efac"}])
    producer = FlakyProducer(failures=2)
    bridge = LivenessBridge(
        cache=cache,
        producer=producer,  # type: ignore[arg-type]
        clock=lambda: NOW,
        retry_backoff=(0.001, 0.001),
    )
    assert asyncio.run(bridge.handle("$SYS/broker/log/N", connect("c1", f"{unique}:efac").encode())) == 0
    assert asyncio.run(bridge.handle("$SYS/broker/log/N", b"\xff garbage")) == 0
    [(topic, value, key)] = producer.sent
    assert (topic, key) == (f"{unique}.device-liveness", "efac")
    assert json.loads(value) == {
        "metadata": {"deviceid": "efac", "tenant": unique, "timestamp": NOW},
        "event": "online",
        "reason": "connected",
        "protocol": "mqtt",
    }
    assert DeviceLiveness.parse(value).event == "online"
