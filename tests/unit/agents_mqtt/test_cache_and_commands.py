import json

import pytest
from confluent_kafka import Message

from agents.core.cache import DeviceCache
from agents.core.stats import Statistics
from agents.mqtt.commands import DeviceEventHandler
from ondas.contracts import ContractError, DeviceEvent
from ondas.errors import Unavailable

pytestmark = pytest.mark.unit

TENANT = "admin"
TOPIC = f"{TENANT}.dojot.device-manager.device"


def _msg(event: DeviceEvent | dict, topic: str = TOPIC) -> Message:
    value = event.to_bytes() if isinstance(event, DeviceEvent) else json.dumps(event).encode()
    return Message(topic=topic, value=value)


@pytest.fixture
def cache() -> DeviceCache:
    c = DeviceCache()
    c.replace_tenant(TENANT, [{"id": "efac", "label": "Device 1"}])
    return c


@pytest.fixture
def sent() -> list[tuple[str, bytes]]:
    return []


@pytest.fixture
def handler(cache, sent) -> DeviceEventHandler:
    return DeviceEventHandler(cache, sent.extend)


@pytest.mark.parametrize(
    ("event", "known"),
    [
        (DeviceEvent.created(TENANT, {"id": "0998", "label": "new"}), {"efac", "0998"}),
        (DeviceEvent.updated(TENANT, {"id": "efac", "label": "renamed"}), {"efac"}),
        (DeviceEvent.removed(TENANT, "efac"), set()),
        (DeviceEvent.removed(TENANT, "nope"), {"efac"}),
        (DeviceEvent.configure(TENANT, "efac", {"fan": 100}, 1), {"efac"}),
    ],
    ids=["create", "update", "remove", "remove-unknown", "configure-leaves-cache"],
)
def test_events_keep_the_cache_current(handler, cache, event, known):
    handler(_msg(event))
    assert {d for d in ("efac", "0998", "nope") if cache.get(TENANT, d)} == known


def test_update_replaces_the_device(handler, cache):
    handler(_msg(DeviceEvent.updated(TENANT, {"id": "efac", "label": "renamed"})))
    assert cache.get(TENANT, "efac") == {"id": "efac", "label": "renamed"}


def test_events_of_a_tenant_not_warmed_are_ignored(handler, cache):
    handler(_msg(DeviceEvent.created("other", {"id": "x"}), topic="other.dojot.device-manager.device"))
    assert not cache.has_tenant("other")
    assert cache.get("other", "x") is None


def test_configure_publishes_the_attrs_to_the_config_topic(handler, sent):
    handler(_msg(DeviceEvent.configure(TENANT, "efac", {"fan": 100, "label": "são"}, 1)))
    assert [(t, json.loads(p)) for t, p in sent] == [("admin:efac/config", {"fan": 100, "label": "são"})]


def test_with_legacy_topics_a_configure_goes_to_both_config_topics(cache, sent):
    stats = Statistics()
    DeviceEventHandler(cache, sent.extend, stats=stats, legacy_topics=True).handle_batch(
        [_msg(DeviceEvent.configure(TENANT, "efac", {"fan": 1}, 1)), _msg(DeviceEvent.configure(TENANT, "b", {}, 2))]
    )
    assert sent == [
        ("admin:efac/config", b'{"fan":1}'),
        ("/admin/efac/config", b'{"fan":1}'),
        ("admin:b/config", b"{}"),
        ("/admin/b/config", b"{}"),
    ]
    assert stats.device(TENANT, "efac")["sent_to_device"] == 1  # one configuration, whatever the number of topics


@pytest.mark.parametrize(
    "event",
    [
        {"event": "configure", "meta": {"service": "other"}, "data": {"id": "efac", "attrs": {"fan": 1}}},
        {"event": "configure", "meta": {"service": TENANT}, "data": {"id": "efac"}},
        {"event": "configure", "meta": {"service": TENANT}, "data": {"id": "a/b", "attrs": {}}},
        {"event": "explode", "meta": {"service": TENANT}, "data": {"id": "efac"}},
        ["not", "an", "object"],
    ],
    ids=["other-tenant", "no-attrs", "bad-device-id", "unknown-event", "array"],
)
def test_bad_events_are_contract_errors(handler, sent, event):
    with pytest.raises(ContractError):
        handler(_msg(event))
    assert sent == []


def test_a_failed_publish_propagates_so_the_event_is_not_committed(cache):
    def fail(messages: list[tuple[str, bytes]]) -> None:
        raise Unavailable("broker down")

    with pytest.raises(Unavailable):
        DeviceEventHandler(cache, fail)(_msg(DeviceEvent.configure(TENANT, "efac", {"fan": 1}, 1)))


def test_replace_and_drop_tenant():
    c = DeviceCache()
    c.replace_tenant("t1", [{"id": "a"}, {"id": "b"}, {"label": "no id"}])
    assert c.tenants() == {"t1"}
    assert c.get("t1", "a") and c.get("t1", "b")
    c.replace_tenant("t1", [{"id": "b"}])
    assert c.get("t1", "a") is None
    c.drop_tenant("t1")
    assert not c.has_tenant("t1")


def test_remove_ends_the_devices_credentials_after_the_cache(cache, sent):
    removed: list[str] = []

    def on_remove(username: str) -> None:
        assert cache.get(TENANT, "efac") is None  # messages are dropped before the session is kicked
        removed.append(username)

    h = DeviceEventHandler(cache, sent.extend, on_remove)
    h(_msg(DeviceEvent.removed(TENANT, "efac")))
    h(_msg(DeviceEvent.created(TENANT, {"id": "b0b"})))
    h(_msg(DeviceEvent.removed(TENANT, "bad/id")))
    assert removed == [f"{TENANT}:efac"]


def test_a_failed_removal_propagates_so_the_event_is_not_committed(cache):
    def on_remove(username: str) -> None:
        raise Unavailable("broker down")

    with pytest.raises(Unavailable):
        DeviceEventHandler(cache, lambda messages: None, on_remove)(_msg(DeviceEvent.removed(TENANT, "efac")))


def test_the_cache_feed_role_keeps_the_cache_and_acts_on_nothing(cache):
    feed = DeviceEventHandler(cache, None)
    feed(_msg(DeviceEvent.configure(TENANT, "efac", {"fan": 1}, 1)))  # not its job: no publish to call
    feed(_msg(DeviceEvent.created(TENANT, {"id": "b0b", "disabled": True})))
    feed(_msg(DeviceEvent.removed(TENANT, "efac")))
    assert cache.get(TENANT, "b0b") == {"id": "b0b", "disabled": True}
    assert cache.get(TENANT, "efac") is None


def test_the_action_role_acts_and_leaves_the_cache_alone(cache, sent):
    removed: list[str] = []
    disabled: list[tuple[str, bool]] = []
    actions = DeviceEventHandler(None, sent.extend, removed.append, lambda u, d: disabled.append((u, d)))
    actions(_msg(DeviceEvent.configure(TENANT, "efac", {"fan": 1}, 1)))
    actions(_msg(DeviceEvent.created(TENANT, {"id": "b0b", "disabled": True})))
    actions(_msg(DeviceEvent.removed(TENANT, "efac")))
    assert [t for t, _ in sent] == [f"{TENANT}:efac/config"]
    assert disabled == [(f"{TENANT}:b0b", True)]
    assert removed == [f"{TENANT}:efac"]
    assert cache.get(TENANT, "efac") is not None and cache.get(TENANT, "b0b") is None


def test_runs_of_configure_events_are_published_together_in_order(cache):
    log: list[tuple[str, object]] = []
    h = DeviceEventHandler(
        cache, lambda messages: log.append(("publish", [t for t, _ in messages])), lambda u: log.append(("remove", u))
    )
    events = [
        DeviceEvent.configure(TENANT, "a", {"n": 1}, 1),
        DeviceEvent.configure(TENANT, "b", {"n": 2}, 2),
        DeviceEvent.configure(TENANT, "a", {"n": 3}, 3),
        DeviceEvent.removed(TENANT, "efac"),
        DeviceEvent.configure(TENANT, "c", {"n": 4}, 4),
    ]
    h.handle_batch([_msg(e) for e in events])
    # Each run is one call in the events' order; the removal is acted on between the two runs.
    assert log == [
        ("publish", [f"{TENANT}:a/config", f"{TENANT}:b/config", f"{TENANT}:a/config"]),
        ("remove", f"{TENANT}:efac"),
        ("publish", [f"{TENANT}:c/config"]),
    ]
