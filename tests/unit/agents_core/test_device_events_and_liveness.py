"""The agents' one device-event handler (agents/core/device_events.py) and one liveness publisher
(agents/core/liveness.py), with fakes of our own ports only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import Message
from prometheus_client import Counter

from agents.core.cache import DeviceCache
from agents.core.device_events import DeviceEventHandler
from agents.core.liveness import LivenessPublisher
from agents.core.payload import DeviceRef, device_headers
from agents.core.stats import Statistics
from ondas.contracts import ContractError, DeviceEvent
from ondas.errors import Unavailable

pytestmark = pytest.mark.unit

EVENTS = Counter("test_core_liveness_events_total", "liveness events (test)", ["tenant", "event", "reason"])


def _msg(tenant: str, event: DeviceEvent) -> Message:
    return Message(topic=f"{tenant}.dojot.device-manager.device", value=event.to_bytes())


class Hooks:
    def __init__(self, takes_configure: bool = True, fail: bool = False) -> None:
        self.takes_configure = takes_configure
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def configure(self, events: Sequence[tuple[str, DeviceEvent]]) -> None:
        self.calls.append(("configure", [e.device_id for _, e in events]))

    def removed(self, ref: DeviceRef) -> None:
        if self.fail:
            raise Unavailable("Redis away")
        self.calls.append(("removed", ref.username))

    def changed(self, ref: DeviceRef, disabled: bool) -> None:
        self.calls.append(("changed", (ref.username, disabled)))


@pytest.fixture
def cache(unique: str) -> DeviceCache:
    c = DeviceCache()
    c.replace_tenant(unique, [{"id": "efac"}])
    return c


def test_the_cache_is_updated_before_the_hooks_and_configure_runs_go_together(unique, cache):
    hooks = Hooks()
    stats = Statistics()
    handler = DeviceEventHandler(cache, hooks, stats)
    handler.handle_batch(
        [
            _msg(unique, DeviceEvent.configure(unique, "efac", {"fan": 1}, 1)),
            _msg(unique, DeviceEvent.configure(unique, "efac", {"fan": 2}, 2)),
            _msg(unique, DeviceEvent.created(unique, {"id": "b0b", "disabled": True})),
            _msg(unique, DeviceEvent.removed(unique, "efac")),
            _msg(unique, DeviceEvent.removed(unique, "bad/id")),
        ]
    )
    assert hooks.calls == [
        ("configure", ["efac", "efac"]),
        ("changed", (f"{unique}:b0b", True)),
        ("removed", f"{unique}:efac"),
    ]
    assert cache.get(unique, "efac") is None and cache.get(unique, "b0b") is not None


def test_configure_is_skipped_for_an_agent_that_takes_none(unique, cache):
    hooks = Hooks(takes_configure=False)
    DeviceEventHandler(cache, hooks)(_msg(unique, DeviceEvent.configure(unique, "efac", {"fan": 1}, 1)))
    assert hooks.calls == []


def test_a_failing_hook_propagates_so_the_event_is_retried(unique, cache):
    with pytest.raises(Unavailable):
        DeviceEventHandler(cache, Hooks(fail=True))(_msg(unique, DeviceEvent.removed(unique, "efac")))


def test_an_event_naming_another_tenant_is_refused(unique, cache):
    hooks = Hooks()
    with pytest.raises(ContractError):
        DeviceEventHandler(cache, hooks)(_msg(unique, DeviceEvent.removed(unique + "x", "efac")))
    assert hooks.calls == [] and cache.get(unique, "efac") is not None


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes, Any, Any]] = []

    def send(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> Future[None]:
        fut: Future[None] = Future()
        if self.fail:
            fut.set_exception(Unavailable("no broker"))
        else:
            self.sent.append((topic, value, key, headers))
            fut.set_result(None)
        return fut


@pytest.mark.parametrize("fail", [False, True], ids=["accepted", "refused"])
def test_a_liveness_event_is_sent_with_the_device_headers_and_counted_once_accepted(unique, fail):
    producer = FakeProducer(fail)
    publisher = LivenessPublisher(producer, "test", EVENTS, clock=lambda: 1_700_000_000_000)  # type: ignore[arg-type]
    before = EVENTS.labels(unique, "online", "why")._value.get()
    online = publisher.message(unique, "efac", "online", "why")
    offline = publisher.message(unique, "efac", "offline", "why")
    assert (online.metadata.timestamp, offline.metadata.timestamp) == (1_700_000_000_000, 1_700_000_000_001)
    publisher.send(online)
    assert EVENTS.labels(unique, "online", "why")._value.get() == before + (0 if fail else 1)
    if not fail:
        [(topic, value, key, headers)] = producer.sent
        assert (topic, key, headers) == (f"{unique}.device-liveness", "efac", device_headers(unique, "efac"))
        assert json.loads(value)["protocol"] == "test"
