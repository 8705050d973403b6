"""The agents' one ingest path (agents/core/ingest.py), with fakes of our own ports only (producer, lookup)."""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

import pytest
from prometheus_client import Counter

from agents.core.cache import DeviceCache
from agents.core.ingest import DeviceIngest
from agents.core.payload import DeviceRef, Drop, device_headers
from ondas.errors import Unavailable

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000
UNKNOWN = Counter("test_ingest_attrs_unknown_total", "unknown attributes (test)", ["tenant"])


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Any, Any]] = []

    def send(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> Future[None]:
        self.sent.append((topic, value, key, headers))
        fut: Future[None] = Future()
        fut.set_result(None)
        return fut


class Lookups:
    def __init__(self, devices: dict[str, dict[str, Any]], fail: bool = False) -> None:
        self.devices = devices
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    def __call__(self, tenant: str, device_id: str) -> dict[str, Any] | None:
        self.calls.append((tenant, device_id))
        if self.fail:
            raise ConnectionError("device manager away")
        return self.devices.get(device_id)


def typed(device_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": device_id, "attrs": {"1": [{"label": "temperature", "value_type": "float"}]}, **extra}


def make(tenant: str, lookup: Lookups | None = None, **kwargs: Any) -> tuple[DeviceIngest, FakeProducer]:
    cache = DeviceCache()
    cache.replace_tenant(tenant, [typed("efac"), typed("off", disabled=True)])
    producer = FakeProducer()
    ingest = DeviceIngest(
        cache=cache,
        producer=producer,  # type: ignore[arg-type]
        unknown_attrs=UNKNOWN,
        unserved_reason=kwargs.pop("unserved_reason", "unknown_tenant"),
        lookup=lookup,
        absent_ttl=60,
        clock=lambda: NOW,
        **kwargs,
    )
    return ingest, producer


@pytest.mark.parametrize(
    ("tenant", "device_id", "unserved", "reason"),
    [
        ("other", "efac", "unknown_tenant", "unknown_tenant"),
        ("other", "efac", "tenant_disabled", "tenant_disabled"),
        ("{t}", "ghost", "unknown_tenant", "unknown_device"),
        ("{t}", "off", "unknown_tenant", "device_disabled"),
    ],
    ids=["unserved-mqtt-label", "unserved-http-label", "unknown-device", "disabled"],
)
def test_judge_refuses_with_the_agents_reason(unique, tenant, device_id, unserved, reason):
    ingest, _ = make(unique, unserved_reason=unserved)
    with pytest.raises(Drop) as refused:
        ingest.judge(DeviceRef(tenant.format(t=unique), device_id))
    assert refused.value.reason == reason


def test_an_unserved_tenant_while_warming_is_unavailable_not_refused(unique):
    ingest, _ = make(unique, warming=lambda: True)
    with pytest.raises(Unavailable):
        ingest.judge(DeviceRef("other", "efac"))


def test_a_known_device_is_admitted_with_its_attribute_types_and_counted_before_the_disabled_check(unique):
    ingest, _ = make(unique)
    known: list[DeviceRef] = []
    admitted = ingest.judge(DeviceRef(unique, "efac"), on_known=known.append)
    assert admitted.types == {"temperature": "float"}
    with pytest.raises(Drop):
        ingest.judge(DeviceRef(unique, "off"), on_known=known.append)
    assert known == [DeviceRef(unique, "efac"), DeviceRef(unique, "off")]


def test_a_cache_miss_is_looked_up_once_and_an_absent_device_is_remembered(unique):
    lookups = Lookups({"new1": typed("new1")})
    ingest, _ = make(unique, lookups)
    assert ingest.judge(DeviceRef(unique, "new1")).device["id"] == "new1"
    assert ingest.judge(DeviceRef(unique, "new1")).device["id"] == "new1"  # now cached
    for _ in range(3):
        with pytest.raises(Drop, match="unknown_device"):
            ingest.judge(DeviceRef(unique, "ghost"))
    assert lookups.calls == [(unique, "new1"), (unique, "ghost")]
    assert not ingest.needs_lookup(DeviceRef(unique, "ghost"))


def test_an_unreachable_device_manager_judges_on_the_cache_alone(unique):
    ingest, _ = make(unique, Lookups({}, fail=True))
    with pytest.raises(Drop, match="unknown_device"):
        ingest.judge(DeviceRef(unique, "ghost"))


def test_judge_without_lookup_leaves_the_device_manager_alone(unique):
    lookups = Lookups({"new1": typed("new1")})
    ingest, _ = make(unique, lookups)
    with pytest.raises(Drop, match="unknown_device"):
        ingest.judge(DeviceRef(unique, "new1"), look_up=False)
    assert lookups.calls == []


def test_the_record_key_value_headers_and_the_agent_time(unique):
    ingest, producer = make(unique)
    admitted = ingest.judge(DeviceRef(unique, "efac"))
    before = UNKNOWN.labels(unique)._value.get()
    first = ingest.record(admitted, {"temperature": 1.5, "extra": 1})
    second = ingest.record(admitted, {"temperature": 2.5})
    own = ingest.record(admitted, {"temperature": 3.5, "timestamp": 1528226137})
    assert (first.topic, first.key) == (f"{unique}.device-data", "efac")
    assert first.headers == device_headers(unique, "efac")
    assert [json.loads(r.value)["metadata"]["timestamp"] for r in (first, second, own)] == [
        NOW,
        NOW + 1,
        1528226137000,
    ]
    assert json.loads(first.value)["attrs"] == {"temperature": 1.5, "extra": 1}
    assert UNKNOWN.labels(unique)._value.get() == before + 1
    ingest.send(first)
    assert producer.sent == [(first.topic, first.value, "efac", first.headers)]


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [({"temperature": "hot"}, "wrong_type"), ({"temperature": 1.0, "timestamp": "soon"}, "bad_timestamp")],
    ids=["wrong-type", "bad-timestamp"],
)
def test_the_attribute_rules_refuse_the_whole_message(unique, attrs, reason):
    ingest, _ = make(unique)
    admitted = ingest.judge(DeviceRef(unique, "efac"))
    with pytest.raises(Drop) as refused:
        ingest.record(admitted, attrs)
    assert refused.value.reason == reason


def test_the_forwarder_header_is_the_only_difference_and_comes_last(unique):
    plain, _ = make(unique)
    named, _ = make(unique, forwarder="host:42")
    a = plain.record(plain.judge(DeviceRef(unique, "efac")), {"temperature": 1.0, "timestamp": 1})
    b = named.record(named.judge(DeviceRef(unique, "efac")), {"temperature": 1.0, "timestamp": 1})
    assert (a.key, a.value) == (b.key, b.value)
    assert b.headers == [*a.headers, ("ondas-agent", "host:42")]
