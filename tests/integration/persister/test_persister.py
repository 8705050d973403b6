"""The persister's consume/write path against the real broker and the real MongoDB-compatible store.

Auth's ``GET /admin/tenants`` is our own component's contract, so a tiny HTTP stub answers it
(tests/auth_stub.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition

from ondas.kafka import consumer_config, ensure_topics, producer_config
from ondas.settings import CommonSettings
from ondas.tenant import tenant_database_name as database_name
from ondas.topics import TENANCY_TOPIC, dead_letter, device_data, device_events, notifications
from persister.app import Persister
from persister.settings import PersisterSettings
from tests.auth_stub import AuthStub
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

PREFIX = "ondas_history_"


@dataclass
class Running:
    persister: Persister
    thread: threading.Thread

    def stop(self) -> None:
        self.persister.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()
        self.persister.close()


def start_persister(kafka_bootstrap: str, mongo_url: str, auth_url: str, group: str, **options: Any) -> Running:
    common = CommonSettings(kafka_bootstrap, auth_url, "unused", "INFO", "127.0.0.1")
    settings = PersisterSettings(common=common, mongo_url=mongo_url, health_port=0, group_id=group, **options)
    p = Persister(settings, instance=group)
    p.start(health_port=0)
    thread = threading.Thread(target=p.run, name=f"persister-{group}", daemon=True)
    thread.start()
    return Running(p, thread)


@pytest.fixture
def mongo(mongo_url: str) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    with pymongo.MongoClient(mongo_url, tz_aware=True) as client:
        yield client


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[Callable[[str, Any], None]]:
    p = Producer(producer_config(kafka_bootstrap))

    def send(topic: str, value: Any, key: str | None = None) -> None:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        p.produce(topic, raw, key=key)
        assert p.flush(15) == 0

    yield send
    p.flush(5)


@pytest.fixture
def running(kafka_bootstrap: str, mongo_url: str, unique: str) -> Iterator[tuple[Running, AuthStub, str]]:
    auth = AuthStub([unique])
    run = start_persister(kafka_bootstrap, mongo_url, auth.url, f"persister-{unique}")
    try:
        yield run, auth, unique
    finally:
        run.stop()
        auth.close()


def data(tenant: str, device: str, attrs: dict[str, Any], ts: Any, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"deviceid": device, "tenant": tenant, "timestamp": ts, **meta}, "attrs": attrs}


def points(mongo: pymongo.MongoClient[dict[str, Any]], tenant: str, **flt: Any) -> list[dict[str, Any]]:
    return list(mongo[database_name(PREFIX, tenant)]["points"].find(flt).sort("ts", 1))


def latest_value(mongo: pymongo.MongoClient[dict[str, Any]], tenant: str, device: str, attr: str) -> Any:
    doc = mongo[database_name(PREFIX, tenant)]["latest"].find_one({"device_id": device, "attr": attr})
    return None if doc is None else doc["value"]


def committed(kafka_bootstrap: str, group: str, topic: str) -> int:
    c = Consumer(consumer_config(kafka_bootstrap, group))
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        c.close()


def dead_letters(kafka_bootstrap: str, topic: str, count: int, group: str) -> list[Any]:
    """The first ``count`` records of ``topic``'s dead-letter topic (waits for them)."""
    c = Consumer(consumer_config(kafka_bootstrap, group))
    got: list[Any] = []
    try:
        c.subscribe([dead_letter(topic)])

        def drain() -> bool:
            got.extend(m for m in c.consume(10, timeout=0.5) if m.error() is None)
            return len(got) >= count

        wait_for(drain, what=f"{count} dead letters")
    finally:
        c.close()
    return got


def high_watermark(kafka_bootstrap: str, topic: str) -> int:
    c = Consumer(consumer_config(kafka_bootstrap, "watermarks"))
    try:
        _low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high)
    finally:
        c.close()


def test_points_land_at_the_right_instant_and_health_is_ready(running, mongo, producer) -> None:
    run, _auth, tenant = running
    topic = device_data(tenant)
    instant = datetime(2018, 6, 5, 19, 15, 37, 452000, tzinfo=UTC)
    producer(topic, data(tenant, "iso", {"t": 1}, "2018-06-05T19:15:37.452Z", protocol="mqtt"), key="iso")
    producer(topic, data(tenant, "ems", {"t": 2}, 1528226137452), key="ems")
    producer(topic, data(tenant, "es", {"t": 3}, 1528226137), key="es")

    docs = wait_for(lambda: len(points(mongo, tenant)) == 3 and points(mongo, tenant), what="3 points")
    by_device = {d["device_id"]: d for d in docs}
    assert by_device["iso"]["ts"] == instant
    assert by_device["iso"]["metadata"] == {"protocol": "mqtt"}
    assert by_device["ems"]["ts"] == instant
    assert by_device["es"]["ts"] == instant.replace(microsecond=0)
    assert sorted(d["value"] for d in docs) == [1, 2, 3]

    db = mongo[database_name(PREFIX, tenant)]
    assert "device_attr_ts" in db["points"].index_information()
    # points are written before the latest values of the same batch
    wait_for(lambda: db["latest"].count_documents({}) == 3, what="3 latest values")

    url = f"http://127.0.0.1:{run.persister.health_port}/health/ready"
    wait_for(lambda: requests.get(url, timeout=5).status_code == 200, what="ready")


def test_latest_keeps_the_newest_value(running, mongo, producer, kafka_bootstrap) -> None:
    _run, _auth, tenant = running
    topic = device_data(tenant)
    producer(topic, data(tenant, "d", {"t": "new"}, 2_000_000), key="d")
    producer(topic, data(tenant, "d", {"t": "old"}, 1_000_000), key="d")
    # offsets are committed only after both writes of a batch: once both messages are committed,
    # every latest-value update has happened, and the older message did not replace the newer value
    end = high_watermark(kafka_bootstrap, topic)
    wait_for(lambda: committed(kafka_bootstrap, f"persister-{tenant}", topic) >= end, what="both messages committed")
    assert len(points(mongo, tenant)) == 2
    assert latest_value(mongo, tenant, "d", "t") == "new"


def test_redelivery_never_duplicates(running, mongo, producer, kafka_bootstrap, mongo_url) -> None:
    _run, auth, tenant = running
    topic = device_data(tenant)
    msg = data(tenant, "dup", {"t": 21.5, "h": 40}, 1528226137452)
    producer(topic, msg, key="dup")
    producer(topic, msg, key="dup")  # re-produced identical message
    producer(topic, data(tenant, "marker", {"m": 1}, 1528226137452), key="marker")
    wait_for(lambda: points(mongo, tenant, device_id="marker"), what="marker stored")
    assert len(points(mongo, tenant, device_id="dup")) == 2

    # The same messages consumed again by a fresh consumer group.
    end = high_watermark(kafka_bootstrap, topic)
    again = start_persister(kafka_bootstrap, mongo_url, auth.url, f"persister-again-{tenant}")
    try:
        wait_for(lambda: committed(kafka_bootstrap, f"persister-again-{tenant}", topic) == end, what="re-consumed")
    finally:
        again.stop()
    assert len(points(mongo, tenant, device_id="dup")) == 2
    assert len(points(mongo, tenant)) == 3


def test_malformed_message_goes_to_the_dead_letter_topic(running, mongo, producer, kafka_bootstrap) -> None:
    _run, _auth, tenant = running
    topic = device_data(tenant)
    ensure_topics(kafka_bootstrap, [dead_letter(topic)])
    producer(topic, data(tenant, "good", {"t": 1}, 1000), key="good")
    producer(topic, b"{not json", key="bad")
    producer(topic, data("someone_else", "evil", {"t": 666}, 1000), key="evil")
    producer(topic, data(tenant, "good", {"t": 2}, 2000), key="good")

    wait_for(lambda: len(points(mongo, tenant)) == 2, what="good points")
    got = dead_letters(kafka_bootstrap, topic, 2, f"dlq-reader-{tenant}")
    assert sorted(m.value() for m in got) == sorted(
        [b"{not json", json.dumps(data("someone_else", "evil", {"t": 666}, 1000)).encode()]
    )
    reasons = [dict(m.headers())["ondas-error"].decode() for m in got]
    assert any("not JSON" in r for r in reasons)
    assert any("does not match" in r for r in reasons)
    assert [d["value"] for d in points(mongo, tenant)] == [1, 2]
    assert mongo[database_name(PREFIX, "someone_else")]["points"].count_documents({"device_id": "evil"}) == 0


def test_tenant_created_at_run_time_is_stored_without_restart(running, mongo, producer, kafka_bootstrap) -> None:
    run, auth, tenant = running
    newcomer = tenant + "_new"
    wait_for(lambda: run.persister.tracker.ready, what="tenancy consumer")
    auth.tenants.append(newcomer)
    producer(TENANCY_TOPIC, {"type": "CREATE", "tenant": newcomer}, key=newcomer)
    wait_for(lambda: device_data(newcomer) in run.persister.loop.topics, what="subscription to the new tenant")
    producer(device_data(newcomer), data(newcomer, "d", {"t": 7}, 1000), key="d")
    docs = wait_for(lambda: points(mongo, newcomer), what="point of the new tenant")
    assert docs[0]["value"] == 7


def test_actuations_are_history_but_not_the_latest_value(running, mongo, producer) -> None:
    _run, _auth, tenant = running
    producer(device_data(tenant), data(tenant, "fan1", {"fan": 10}, 1528226137452), key="fan1")
    configure = {
        "event": "configure",
        "meta": {"service": tenant, "timestamp": 1528226138452},
        "data": {"id": "fan1", "attrs": {"fan": 100}},
    }
    producer(device_events(tenant), configure, key="fan1")
    docs = wait_for(lambda: len(points(mongo, tenant)) == 2 and points(mongo, tenant), what="2 points")
    assert [(d["value"], d["metadata"]) for d in docs] == [(10, {}), (100, {"event": "configure"})]
    assert [d["kind"] for d in docs] == ["reading", "command"]  # what history's kind filter reads
    wait_for(lambda: latest_value(mongo, tenant, "fan1", "fan") is not None, what="latest fan value")
    assert latest_value(mongo, tenant, "fan1", "fan") == 10


def test_device_manager_events_record_the_known_devices(running, mongo, producer) -> None:
    _run, _auth, tenant = running
    devices = mongo[database_name(PREFIX, tenant)]["devices"]

    def send(event: str, device_id: str, label: str | None = None) -> None:
        body: dict[str, Any] = {"id": device_id}
        if label is not None:
            body.update(label=label, templates=[1], attrs={}, disabled=False)
        producer(device_events(tenant), {"event": event, "meta": {"service": tenant}, "data": body}, key=device_id)

    send("create", "a", "A")
    send("create", "b", "B")
    send("update", "a", "A2")
    send("remove", "b")
    send("create", "c", "C")
    wait_for(lambda: devices.find_one({"_id": "c"}), what="the last device recorded")
    assert {d["_id"]: d["label"] for d in devices.find()} == {"a": "A2", "c": "C"}
    assert points(mongo, tenant) == []  # a known device without data: nothing in the history


def test_removed_device_data_is_dropped_when_configured(kafka_bootstrap, mongo_url, mongo, producer, unique) -> None:
    auth = AuthStub([unique])
    run = start_persister(kafka_bootstrap, mongo_url, auth.url, f"persister-{unique}", drop_removed_devices=True)
    try:
        for device in ("gone", "kept"):
            producer(device_data(unique), data(unique, device, {"t": 1, "h": 2}, 1000), key=device)
        wait_for(lambda: len(points(mongo, unique)) == 4, what="4 points")
        remove = {"event": "remove", "meta": {"service": unique}, "data": {"id": "gone"}}
        producer(device_events(unique), remove, key="gone")
        wait_for(lambda: not points(mongo, unique, device_id="gone"), what="removed device's points deleted")
        db = mongo[database_name(PREFIX, unique)]
        # The removal deletes the points, then the latest values: wait for both.
        wait_for(lambda: db["latest"].count_documents({"device_id": "gone"}) == 0, what="removed device's latest")
        assert len(points(mongo, unique, device_id="kept")) == 2
        wait_for(lambda: db["latest"].count_documents({"device_id": "kept"}) == 2, what="kept latest values")
    finally:
        run.stop()
        auth.close()


def test_removed_device_data_is_kept_by_default(running, mongo, producer, kafka_bootstrap) -> None:
    _run, _auth, tenant = running
    producer(device_data(tenant), data(tenant, "old", {"t": 1}, 1000), key="old")
    producer(device_events(tenant), {"event": "remove", "meta": {"service": tenant}, "data": {"id": "old"}}, key="old")
    producer(device_data(tenant), data(tenant, "marker", {"t": 1}, 1000), key="marker")
    wait_for(lambda: committed(kafka_bootstrap, f"persister-{tenant}", device_events(tenant)) == 1, what="commit")
    wait_for(lambda: points(mongo, tenant, device_id="marker"), what="marker")
    assert len(points(mongo, tenant, device_id="old")) == 1


def test_deleted_tenant_data_is_dropped_and_a_recreated_tenant_keeps_only_its_own(running, mongo, producer) -> None:
    run, auth, tenant = running
    doomed, reborn = tenant + "_x", tenant + "_y"
    wait_for(lambda: run.persister.tracker.ready, what="tenancy consumer")
    for t in (doomed, reborn):
        auth.tenants.append(t)
        producer(TENANCY_TOPIC, {"type": "CREATE", "tenant": t}, key=t)
    wait_for(lambda: device_data(reborn) in run.persister.loop.topics, what="subscribed")
    for t in (doomed, reborn):
        producer(device_data(t), data(t, "d", {"t": 1}, 1000), key="d")
    wait_for(lambda: points(mongo, doomed) and points(mongo, reborn), what="points of both tenants")

    # reborn is deleted and created again before the persister hears of it: auth still lists it. What it
    # stored before the deletion goes; what the new tenant sends (timed after the deletion) stays.
    auth.tenants.remove(doomed)
    for t in (doomed, reborn):
        producer(TENANCY_TOPIC, {"type": "DELETE", "tenant": t}, key=t)
    producer(TENANCY_TOPIC, {"type": "CREATE", "tenant": reborn}, key=reborn)
    later = int(time.time() * 1000) + 1
    producer(device_data(reborn), data(reborn, "d", {"t": 2}, later), key="d")
    wait_for(lambda: database_name(PREFIX, doomed) not in mongo.list_database_names(), what="tenant dropped")
    wait_for(lambda: device_data(reborn) in run.persister.loop.topics, what="re-subscribed")
    wait_for(lambda: device_data(doomed) not in run.persister.loop.topics, what="unsubscribed")
    wait_for(lambda: [p["value"] for p in points(mongo, reborn)] == [2], what="only the new tenant's point")
    assert points(mongo, tenant) == []  # untouched (no data, but the database name was never dropped by mistake)


def test_points_older_than_the_ttl_expire(kafka_bootstrap, mongo_url, mongo, producer, unique) -> None:
    auth = AuthStub([unique])
    run = start_persister(kafka_bootstrap, mongo_url, auth.url, f"persister-{unique}", ttl_seconds=3600)
    try:
        now_ms = int(time.time() * 1000)
        producer(device_data(unique), data(unique, "d", {"t": "old"}, now_ms - 7_200_000), key="d")
        producer(device_data(unique), data(unique, "d", {"t": "new"}, now_ms), key="d")
        wait_for(lambda: points(mongo, unique, device_id="d"), what="points written")
        indexes = mongo[database_name(PREFIX, unique)]["points"].index_information()
        assert indexes["ts_ttl"]["expireAfterSeconds"] == 3600
        # The store's TTL sweep runs every second in tests (every 60 s by default, as MongoDB's).
        docs = wait_for(lambda: [d["value"] for d in points(mongo, unique)] == ["new"], timeout=30, what="expiry")
        assert docs
        assert latest_value(mongo, unique, "d", "t") == "new"
    finally:
        run.stop()
        auth.close()


def test_changing_the_ttl_changes_the_index(mongo_url, mongo, unique) -> None:
    from persister.models import Point
    from persister.store_mongo import MongoPointStore

    for ttl, expected in ((60, 60), (120, 120), (0, None)):
        store = MongoPointStore(mongo_url, PREFIX, ttl_seconds=ttl)
        try:
            store.write(unique, [Point("d", "t", ttl, 1000)])
        finally:
            store.close()
        info = mongo[database_name(PREFIX, unique)]["points"].index_information()
        assert info.get("ts_ttl", {}).get("expireAfterSeconds") == expected


def test_notifications_are_kept_once_unless_they_ask_not_to_be(running, mongo, producer, kafka_bootstrap) -> None:
    _run, _auth, tenant = running
    topic = notifications(tenant)
    ensure_topics(kafka_bootstrap, [dead_letter(topic)])
    kept = mongo[database_name(PREFIX, tenant)]["notifications"]
    note = {"msgID": "rain-105", "timestamp": 1528226137452, "message": "Rain in the last hour: 105 mm",
            "metaAttrsFilter": {"rain": 105, "shouldPersist": True}, "subject": "user_notification"}  # fmt: skip
    producer(topic, note, key="station1")
    producer(topic, note, key="station1")  # produced twice (a flow's redelivered output): stored once
    producer(topic, {**note, "msgID": "quiet", "metaAttrsFilter": {"shouldPersist": False}}, key="station1")
    producer(topic, {"message": "no timestamp"}, key="x")  # malformed: dead-lettered
    producer(topic, {"timestamp": "2018-06-05T19:15:37.460Z", "message": "from elsewhere"}, key="x")
    wait_for(lambda: kept.count_documents({}) == 2, what="2 notifications kept")
    docs = {d["_id"]: d for d in kept.find()}
    assert "quiet" not in docs
    assert docs["rain-105"]["ts"] == datetime(2018, 6, 5, 19, 15, 37, 452000, tzinfo=UTC)
    assert docs["rain-105"]["metaAttrsFilter"] == {"rain": 105, "shouldPersist": True}
    other = next(d for k, d in docs.items() if k != "rain-105")
    assert (other["message"], other["subject"]) == ("from elsewhere", "user_notification")
    assert "ts" in kept.index_information()
    got = dead_letters(kafka_bootstrap, topic, 1, f"dlq-notes-{tenant}")
    assert [m.value() for m in got] == [b'{"message": "no timestamp"}']
    assert "timestamp" in dict(got[0].headers())["ondas-error"].decode()
