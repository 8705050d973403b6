"""The fan-out hub without servers: routing by topic, filters, the bounded queue, the socket.io sink, and which
topics it asks the consumer to read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kafka_ws.consumers import start_offset
from kafka_ws.models import CloseCode, CloseError, Filter
from kafka_ws.service import Hub, WsSubscriber, authorize_topic

pytestmark = pytest.mark.unit


class Sink:
    def __init__(self, listening: bool) -> None:
        self.listening = listening
        self.got: list[tuple[str, str, Any]] = []

    def wants(self, tenant: str, subject: str) -> bool:
        return self.listening

    def device_data(self, tenant: str, message: Any) -> None:
        self.got.append(("data", tenant, message))

    def notification(self, tenant: str, message: Any) -> None:
        self.got.append(("notification", tenant, message))


def _msg(tenant: str, seq: int) -> bytes:
    return json.dumps({"metadata": {"tenant": tenant, "deviceid": "d"}, "attrs": {"seq": seq}}).encode()


def test_routes_by_topic_and_filters() -> None:
    hub = Hub()
    slow: list[WsSubscriber] = []
    plain = WsSubscriber("a", "a.device-data", Filter(), 10, slow.append)
    odd = WsSubscriber("a", "a.device-data", Filter.parse(fields="attrs", where="attrs.seq=in:1,3;"), 10, slow.append)
    other = WsSubscriber("b", "b.device-data", Filter(), 10, slow.append)
    for sub in (plain, odd, other):
        hub.add(sub)
    hub.dispatch([("a.device-data", _msg("a", i)) for i in range(4)] + [("a.other", b"x"), ("bad", b"{}")])
    assert plain.queue.qsize() == 4 and other.queue.qsize() == 0
    assert [json.loads(odd.queue.get_nowait()) for _ in range(2)] == [{"attrs": {"seq": 1}}, {"attrs": {"seq": 3}}]
    hub.remove(plain)
    hub.dispatch([("a.device-data", b"not json")])
    assert plain.queue.qsize() == 4 and odd.queue.qsize() == 0 and not slow


def test_full_queue_marks_slow_once_and_never_blocks() -> None:
    hub = Hub()
    slow: list[WsSubscriber] = []
    sub = WsSubscriber("a", "a.t", Filter(), 2, slow.append)
    hub.add(sub)
    hub.dispatch([("a.t", b"1")] * 5)
    assert sub.queue.qsize() == 2 and slow == [sub] and sub.slow


def test_sink_gets_data_and_notifications_only_when_it_listens() -> None:
    hub = Hub()
    deaf, ear = Sink(False), Sink(True)
    hub.sinks.extend([deaf, ear])
    hub.dispatch([("a.device-data", _msg("a", 1)), ("a.dojot.notifications", b'{"n": 1}'), ("a.other", b"{}")])
    assert deaf.got == []
    assert [(k, t) for k, t, _ in ear.got] == [("data", "a"), ("notification", "a")]


def test_authorize_topic() -> None:
    authorize_topic("a", "a.device-data")
    for tenant, topic, code in [
        ("a", "b.device-data", CloseCode.FORBIDDEN_TOPIC),
        ("a", "dojot-management.dojot.tenancy", CloseCode.FORBIDDEN_TOPIC),
        ("a", "nodot", CloseCode.INVALID_PATHNAME),
    ]:
        with pytest.raises(CloseError) as err:
            authorize_topic(tenant, topic)
        assert err.value.code == code


def test_hub_reports_the_topics_it_listens_to_when_they_change() -> None:
    changes: list[frozenset[str]] = []
    hub = Hub()
    hub.on_change = lambda: changes.append(hub.topics())
    first = WsSubscriber("a", "a.device-data", Filter(), 10, lambda _s: None)
    second = WsSubscriber("a", "a.device-data", Filter(), 10, lambda _s: None)
    other = WsSubscriber("b", "b.dojot.notifications", Filter(), 10, lambda _s: None)
    hub.add(first)
    hub.add(second)  # a second listener of the same topic changes nothing
    hub.add(other)
    hub.remove(first)
    hub.remove(first)  # removed twice (close and finally): once only
    hub.remove(second)
    hub.remove(other)
    assert changes == [
        frozenset({"a.device-data"}),
        frozenset({"a.device-data", "b.dojot.notifications"}),
        frozenset({"b.dojot.notifications"}),
        frozenset(),
    ]


def test_a_listened_partition_is_read_from_a_little_before_its_end() -> None:
    assert start_offset(0, 0, 1000) == 0
    assert start_offset(0, 5000, 1000) == 4000
    assert start_offset(4500, 5000, 1000) == 4500
    assert start_offset(-1, -1, 1000) == 0
