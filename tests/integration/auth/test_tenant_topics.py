"""A deleted tenant's topics go with it (on the real broker): auth deletes every ``<tenant>.*`` topic after the
DELETE event, and creating a tenant deletes what a former tenant of that name left, so a re-created tenant's
topics hold nothing from before."""

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ondas.kafka import consumer_config, ensure_topics, producer_config
from ondas.topics import TENANCY_TOPIC, dead_letter, device_data, device_events, device_liveness

pytestmark = pytest.mark.integration


def topics(bootstrap: str, tenant: str) -> set[str]:
    names = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return {t for t in names if t.startswith(tenant + ".")}


def put(bootstrap: str, topic: str, value: bytes) -> None:
    p = Producer(producer_config(bootstrap))
    p.produce(topic, value)
    assert p.flush(10) == 0


def first_value(bootstrap: str, topic: str) -> bytes | None:
    c = Consumer(consumer_config(bootstrap, "reader-" + uuid.uuid4().hex[:8]))
    c.assign([TopicPartition(topic, 0, 0)])
    try:
        for _ in range(40):
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                return msg.value()
    finally:
        c.close()
    return None


def test_deleting_a_tenant_deletes_its_topics_and_a_new_one_starts_empty(auth, kafka_bootstrap):
    admin = auth.admin_token()
    tenant = "t" + uuid.uuid4().hex[:10]
    assert auth.call("POST", "/tenants", admin, json={"tenant": tenant}).status_code == 201
    own = {device_data(tenant), device_events(tenant), device_liveness(tenant)}
    assert own <= topics(kafka_bootstrap, tenant)
    ensure_topics(kafka_bootstrap, [dead_letter(device_data(tenant))])  # a service's dead-letter topic
    put(kafka_bootstrap, device_data(tenant), b"old")

    assert auth.call("DELETE", f"/tenants/{tenant}", admin).status_code == 200
    assert topics(kafka_bootstrap, tenant) == set()
    assert TENANCY_TOPIC in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics

    # Something recreated a topic of the deleted tenant meanwhile (a late producer): creating the tenant again
    # clears it before making fresh topics.
    put(kafka_bootstrap, device_data(tenant), b"late")
    assert auth.call("POST", "/tenants", admin, json={"tenant": tenant}).status_code == 201
    assert topics(kafka_bootstrap, tenant) == own
    put(kafka_bootstrap, device_data(tenant), b"new")
    assert first_value(kafka_bootstrap, device_data(tenant)) == b"new"
