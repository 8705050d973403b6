"""The persister's consume/write path against the real broker and the real MongoDB-compatible store.

Auth's ``GET /admin/tenants`` is our own component's contract, so a tiny HTTP stub answers it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pymongo
import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition

from ondas.kafka import consumer_config, ensure_topics, producer_config
from ondas.settings import CommonSettings
from ondas.tenant import tenant_database_name as database_name
from ondas.topics import TENANCY_TOPIC, dead_letter, device_data
from persister.app import Persister
from persister.settings import PersisterSettings

pytestmark = pytest.mark.integration

PREFIX = "ondas_history_"


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class AuthStub:
    """Answers GET /admin/tenants with the current list."""

    def __init__(self, tenants: list[str]) -> None:
        self.tenants = tenants
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"tenants": stub.tenants}).encode()
                self.send_response(200 if self.path == "/admin/tenants" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class Running:
    persister: Persister
    thread: threading.Thread

    def stop(self) -> None:
        self.persister.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()
        self.persister.close()


def start_persister(kafka_bootstrap: str, mongo_url: str, auth_url: str, group: str) -> Running:
    common = CommonSettings(kafka_bootstrap, auth_url, "unused", "INFO", "127.0.0.1")
    settings = PersisterSettings(common=common, mongo_url=mongo_url, health_port=0, group_id=group)
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


def committed(kafka_bootstrap: str, group: str, topic: str) -> int:
    c = Consumer(consumer_config(kafka_bootstrap, group))
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        c.close()


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
    assert db["latest"].count_documents({}) == 3

    url = f"http://127.0.0.1:{run.persister.health_port}/health/ready"
    wait_for(lambda: requests.get(url, timeout=5).status_code == 200, what="ready")


def test_latest_keeps_the_newest_value(running, mongo, producer) -> None:
    _run, _auth, tenant = running
    topic = device_data(tenant)
    producer(topic, data(tenant, "d", {"t": "new"}, 2_000_000), key="d")
    producer(topic, data(tenant, "d", {"t": "old"}, 1_000_000), key="d")
    wait_for(lambda: len(points(mongo, tenant)) == 2, what="2 points")
    latest = mongo[database_name(PREFIX, tenant)]["latest"].find_one({"device_id": "d", "attr": "t"})
    assert latest is not None
    assert latest["value"] == "new"


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
    c = Consumer(consumer_config(kafka_bootstrap, f"dlq-reader-{tenant}"))
    got: list[Any] = []
    try:
        c.subscribe([dead_letter(topic)])

        def drain() -> bool:
            got.extend(m for m in c.consume(10, timeout=0.5) if m.error() is None)
            return len(got) >= 2

        wait_for(drain, what="2 dead letters")
    finally:
        c.close()
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
