"""Last-seen liveness rules with fakes of our own ports (the Redis side is in tests/integration/agents_http)."""

import json
from concurrent.futures import Future

import pytest

from agents.http.liveness import Liveness
from ondas.errors import Unavailable

pytestmark = pytest.mark.unit


class FakeLastSeen:
    def __init__(self) -> None:
        self.seen_at: dict[tuple[str, str], int] = {}

    def seen(self, tenant, device_id, at_ms) -> bool:
        new = (tenant, device_id) not in self.seen_at
        self.seen_at[(tenant, device_id)] = at_ms
        return new

    def forget(self, tenant, device_id) -> None:
        self.seen_at.pop((tenant, device_id), None)

    def expire(self, tenant, cutoff_ms, limit=1000) -> list[str]:
        gone = [d for (t, d), at in self.seen_at.items() if t == tenant and at <= cutoff_ms]
        for d in gone:
            del self.seen_at[(tenant, d)]
        return gone


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, str]] = []
        self.fail = False

    def send(self, topic, value, key=None, headers=None) -> Future:
        fut: Future = Future()
        if self.fail:
            fut.set_exception(Unavailable("no broker"))
        else:
            self.sent.append((topic, json.loads(value), key))
            fut.set_result(None)
        return fut


class Clock:
    now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def make():
    clock, producer, seen = Clock(), FakeProducer(), FakeLastSeen()
    return Liveness(seen, producer, timeout_s=2, clock=clock), producer, seen, clock  # type: ignore[arg-type]


def test_online_once_then_offline_after_the_timeout_then_online_again():
    live, producer, _, clock = make()
    assert live.seen("acme", "d1") is not None
    assert live.seen("acme", "d1") is None, "still online: no second announcement"
    clock.now += 1999
    assert live.sweep(["acme"]) == 0
    clock.now += 1
    assert live.sweep(["acme"]) == 1
    assert live.seen("acme", "d1") is not None
    events = [(v["event"], v["reason"], v["protocol"], key) for _, v, key in producer.sent]
    assert events == [
        ("online", "message", "http", "d1"),
        ("offline", "timeout", "http", "d1"),
        ("online", "message", "http", "d1"),
    ]
    assert {topic for topic, _, _ in producer.sent} == {"acme.device-liveness"}


def test_an_offline_event_kafka_refused_is_sent_by_the_next_sweep():
    live, producer, _, clock = make()
    live.seen("acme", "d1")
    clock.now += 5000
    producer.fail = True
    assert live.sweep(["acme"]) == 0
    producer.fail = False
    assert live.sweep(["acme"]) == 1
    assert [v["event"] for _, v, _ in producer.sent] == ["online", "offline"]


def test_timestamps_strictly_increase_per_device_and_a_removed_device_is_forgotten():
    live, producer, seen, clock = make()
    live.seen("acme", "d1")
    live.online_failed("acme", "d1")
    assert ("acme", "d1") not in seen.seen_at
    live.seen("acme", "d1")
    stamps = [v["metadata"]["timestamp"] for _, v, _ in producer.sent]
    assert stamps == [clock.now, clock.now + 1]
    live.forget("acme", "d1")
    clock.now += 10_000
    assert live.sweep(["acme"]) == 0, "a removed device gets no offline event"
