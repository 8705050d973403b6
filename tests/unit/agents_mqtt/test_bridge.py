import asyncio
import json
import zlib
from concurrent.futures import Future

import pytest

from agents.core.cache import DeviceCache
from agents.mqtt.bridge import AttrsBridge, shard_of
from agents.mqtt.metrics import DROPPED, OTHER_SHARD, PUBLISHED
from ondas.errors import Unavailable

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000


class FakeProducer:
    """Our own producer port: records sends; fails the first ``failures`` deliveries."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[str, bytes, str, list]] = []
        self.failures = failures

    def send(self, topic, value, key=None, headers=None) -> Future:
        fut: Future = Future()
        if self.failures:
            self.failures -= 1
            fut.set_exception(Unavailable("no broker"))
        else:
            self.sent.append((topic, value, key, headers))
            fut.set_result(None)
        return fut


def _bridge(tenant: str, producer: FakeProducer) -> AttrsBridge:
    cache = DeviceCache()
    cache.replace_tenant(tenant, [{"id": "efac"}])
    return AttrsBridge(
        cache=cache,
        producer=producer,  # type: ignore[arg-type]
        max_payload_bytes=64,
        max_depth=4,
        clock=lambda: NOW,
        retry_backoff=(0.001, 0.001),
    )


def _dropped(tenant: str, reason: str) -> float:
    return DROPPED.labels(tenant, reason)._value.get()


def test_forwards_a_known_devices_message(unique):
    producer = FakeProducer()
    assert asyncio.run(_bridge(unique, producer).handle(f"{unique}:efac/attrs", b'{"temperature": 10.6}')) == 0
    [(topic, value, key, headers)] = producer.sent
    assert topic == f"{unique}.device-data"
    assert key == "efac"
    assert ("ondas-tenant", unique) in headers and ("ondas-device", "efac") in headers
    assert json.loads(value) == {
        "metadata": {"deviceid": "efac", "tenant": unique, "timestamp": NOW},
        "attrs": {"temperature": 10.6},
    }
    assert PUBLISHED.labels(unique)._value.get() == 1


@pytest.mark.parametrize(
    ("topic", "payload", "label", "reason"),
    [
        ("{t}:nope/attrs", b"{}", "{t}", "unknown_device"),
        ("zz{t}:efac/attrs", b"{}", "_unknown", "unknown_tenant"),
        ("{t}:efac/attrs", b"x" * 65, "{t}", "too_large"),
        ("{t}:efac/attrs", b"hello", "{t}", "not_json"),
        ("{t}:efac/attrs", b"[1]", "{t}", "not_object"),
        ("{t}:efac/attrs", b'{"a":{"b":{"c":{"d":{}}}}}', "{t}", "too_deep"),
        ("{t}:efac/attrs", b'{"timestamp": "soon"}', "{t}", "bad_timestamp"),
        ("{t}/efac/attrs", b"{}", "_unknown", "bad_topic"),
    ],
    ids=["unknown-device", "unknown-tenant", "oversized", "not-json", "array", "too-deep", "bad-ts", "bad-topic"],
)
def test_drops_are_acknowledged_and_counted(unique, topic, payload, label, reason):
    producer = FakeProducer()
    label = label.format(t=unique)
    before = _dropped(label, reason)
    assert asyncio.run(_bridge(unique, producer).handle(topic.format(t=unique), payload)) == 0
    assert producer.sent == []
    assert _dropped(label, reason) == before + 1


def test_kafka_failures_are_retried_before_acknowledging(unique):
    producer = FakeProducer(failures=2)
    assert asyncio.run(_bridge(unique, producer).handle(f"{unique}:efac/attrs", b'{"a": 1}')) == 0
    assert len(producer.sent) == 1


class Lookups:
    """Our own lookup port: answers from a dict and counts calls."""

    def __init__(self, devices: dict[str, dict]) -> None:
        self.devices = devices
        self.calls: list[tuple[str, str]] = []

    def __call__(self, tenant: str, device_id: str):
        self.calls.append((tenant, device_id))
        return self.devices.get(device_id)


def _bridge_with_lookup(tenant: str, producer: FakeProducer, lookups: Lookups) -> tuple[AttrsBridge, DeviceCache]:
    cache = DeviceCache()
    cache.replace_tenant(tenant, [])
    bridge = AttrsBridge(
        cache=cache,
        producer=producer,  # type: ignore[arg-type]
        max_payload_bytes=64,
        max_depth=4,
        clock=lambda: NOW,
        lookup=lookups,
        absent_ttl=60,
    )
    return bridge, cache


def test_a_device_missing_from_the_cache_is_looked_up_once_and_keeps_its_order(unique):
    producer = FakeProducer()
    lookups = Lookups({"new1": {"id": "new1"}})
    bridge, cache = _bridge_with_lookup(unique, producer, lookups)

    async def burst():
        return await asyncio.gather(
            *(bridge.handle(f"{unique}:new1/attrs", json.dumps({"n": i}).encode()) for i in range(5))
        )

    assert asyncio.run(burst()) == [0] * 5
    assert lookups.calls == [(unique, "new1")]
    assert [json.loads(v)["attrs"]["n"] for _, v, _, _ in producer.sent] == [0, 1, 2, 3, 4]
    assert cache.get(unique, "new1") == {"id": "new1"}


def test_absent_and_removed_devices_are_refused_without_flooding_the_lookup(unique):
    from ondas.contracts import DeviceEvent

    producer = FakeProducer()
    lookups = Lookups({"gone": {"id": "gone"}})
    bridge, cache = _bridge_with_lookup(unique, producer, lookups)
    for _ in range(3):
        asyncio.run(bridge.handle(f"{unique}:ghost/attrs", b"{}"))
    assert lookups.calls == [(unique, "ghost")]  # remembered as absent
    assert _dropped(unique, "unknown_device") == 3

    # A lookup that answers after the device was removed must not bring it back.
    cache.apply(unique, DeviceEvent.removed(unique, "gone"))
    asyncio.run(bridge.handle(f"{unique}:gone/attrs", b"{}"))
    assert cache.get(unique, "gone") is None
    assert producer.sent == []


def test_a_message_that_finds_the_device_cached_waits_for_the_earlier_lookup(unique):
    """Earlier messages of a device await its lookup; the create event lands in the cache meanwhile; a later
    message of the same device must not overtake them."""
    import threading

    from ondas.contracts import DeviceEvent

    release = threading.Event()

    def slow_lookup(tenant, device_id):
        release.wait(5)
        return {"id": device_id}

    producer = FakeProducer()
    bridge, cache = _bridge_with_lookup(unique, producer, slow_lookup)

    async def scenario():
        first = [asyncio.ensure_future(bridge.handle(f"{unique}:dev1/attrs", b'{"n": %d}' % i)) for i in (0, 1)]
        await asyncio.sleep(0.05)  # both are now waiting on the lookup
        cache.apply(unique, DeviceEvent.created(unique, {"id": "dev1"}))
        late = asyncio.ensure_future(bridge.handle(f"{unique}:dev1/attrs", b'{"n": 2}'))
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*first, late)

    assert asyncio.run(scenario()) == [0, 0, 0]
    assert [json.loads(v)["attrs"]["n"] for _, v, _, _ in producer.sent] == [0, 1, 2]


def test_agent_timestamps_increase_per_device_within_one_millisecond(unique):
    producer = FakeProducer()
    bridge = _bridge(unique, producer)  # its clock is frozen at NOW

    async def three():
        for i in range(3):
            await bridge.handle(f"{unique}:efac/attrs", json.dumps({"n": i}).encode())
        await bridge.handle(f"{unique}:efac/attrs", json.dumps({"n": 3, "timestamp": 1528226137}).encode())

    asyncio.run(three())
    stamps = [json.loads(v)["metadata"]["timestamp"] for _, v, _, _ in producer.sent]
    assert stamps == [NOW, NOW + 1, NOW + 2, 1528226137000]  # a device's own timestamp is kept (epoch s -> ms)


def test_shards_split_the_devices_between_processes_and_acknowledge_the_others(unique):
    devices = [f"d{i:03d}" for i in range(200)]
    producers = [FakeProducer(), FakeProducer(), FakeProducer()]
    bridges = []
    for index, producer in enumerate(producers):
        cache = DeviceCache()
        cache.replace_tenant(unique, [{"id": d} for d in devices])
        bridges.append(
            AttrsBridge(
                cache=cache,
                producer=producer,  # type: ignore[arg-type]
                max_payload_bytes=64,
                max_depth=4,
                clock=lambda: NOW,
                shard=(index, 3),
            )
        )

    async def send_all() -> list[int]:
        return [await b.handle(f"{unique}:{d}/attrs", b'{"v": 1}') for d in devices for b in bridges]

    other_before = OTHER_SHARD._value.get()
    assert set(asyncio.run(send_all())) == {0}  # every copy is acknowledged, forwarded or not
    forwarded = [sorted(key for _, _, key, _ in p.sent) for p in producers]
    # Each device forwarded by exactly one process, the one its shard names, and every process has some.
    assert sorted(d for keys in forwarded for d in keys) == devices
    for index, keys in enumerate(forwarded):
        assert keys and all(shard_of(f"{unique}:{d}", 3) == index for d in keys)
    assert OTHER_SHARD._value.get() == other_before + 2 * len(devices)


def test_the_shard_of_a_device_is_stable():
    # crc32, not the salted hash(): every process and release must agree on it.
    assert shard_of("admin:efac", 2) == zlib.crc32(b"admin:efac") % 2
    assert {shard_of(f"t:{i}", 1) for i in range(50)} == {0}
