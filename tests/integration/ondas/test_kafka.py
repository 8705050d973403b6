"""The shared Kafka layer against the real Kafka-protocol broker: offsets are committed only after the handler
succeeded, and each error policy does what it says."""

import threading
import time

import pytest
from confluent_kafka import Consumer

from ondas.errors import Unavailable
from ondas.kafka import ConsumerLoop, Producer, StopConsuming, consumer_config, ensure_topics, per_message

pytestmark = pytest.mark.integration


def produce(bootstrap, topic, values):
    p = Producer(bootstrap)
    try:
        for i, v in enumerate(values):
            p.send_and_wait(topic, v, key=f"k{i % 3}")
    finally:
        p.close()


def run_loop(loop):
    errors = []

    def target():
        try:
            loop.run()
        except StopConsuming as exc:
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, errors


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def drain(bootstrap, topic, expected, timeout=30.0):
    c = Consumer(consumer_config(bootstrap, f"drain-{time.monotonic_ns()}"))
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        c.close()
    return out


def test_offsets_are_committed_only_after_the_handler_succeeded(kafka_bootstrap, unique):
    topic = f"{unique}.device-data"
    ensure_topics(kafka_bootstrap, [topic])
    produce(kafka_bootstrap, topic, [f"m{i}".encode() for i in range(10)])

    seen = []
    crash_at = 5

    def handler(msg):
        if msg.value() == f"m{crash_at}".encode():
            raise RuntimeError("boom")  # STOP policy: the loop ends without committing m5
        seen.append(msg.value())

    loop = ConsumerLoop(
        name="t",
        bootstrap=kafka_bootstrap,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=per_message(handler),
        batch_size=1,
    )
    t, errors = run_loop(loop)
    t.join(60)
    assert errors and "boom" in str(errors[0])
    assert seen == [f"m{i}".encode() for i in range(crash_at)]

    # A new member of the same group resumes exactly at the message that failed.
    resumed = []
    loop2 = ConsumerLoop(
        name="t2",
        bootstrap=kafka_bootstrap,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=per_message(lambda m: resumed.append(m.value())),
    )
    t2, _ = run_loop(loop2)
    wait_for(lambda: len(resumed) >= 10 - crash_at)
    loop2.stop()
    t2.join(30)
    assert resumed == [f"m{i}".encode() for i in range(crash_at, 10)]


def test_bad_messages_go_to_the_dead_letter_topic_and_the_rest_is_handled(kafka_bootstrap, unique):
    topic = f"{unique}.device-data"
    ensure_topics(kafka_bootstrap, [topic, topic + ".dlq"])
    produce(kafka_bootstrap, topic, [b"ok1", b"bad", b"ok2"])
    handled = []

    def handler(msg):
        if msg.value() == b"bad":
            raise ValueError("not a device-data message")
        handled.append(msg.value())

    loop = ConsumerLoop(
        name="t", bootstrap=kafka_bootstrap, group_id=f"g-{unique}", topics=[topic], handler=per_message(handler)
    )
    t, errors = run_loop(loop)
    wait_for(lambda: b"ok2" in handled)
    loop.stop()
    t.join(30)
    assert not errors
    assert handled.count(b"ok2") == 1 and b"ok1" in handled
    dead = drain(kafka_bootstrap, topic + ".dlq", 1)
    assert [m.value() for m in dead] == [b"bad"]
    headers = dict(dead[0].headers())
    assert b"not a device-data message" in headers["ondas-error"]
    assert headers["ondas-source-topic"] == topic.encode()


def test_unavailable_dependencies_are_retried_until_they_succeed(kafka_bootstrap, unique):
    topic = f"{unique}.device-data"
    ensure_topics(kafka_bootstrap, [topic])
    produce(kafka_bootstrap, topic, [b"only"])
    attempts = []

    def handler(msg):
        attempts.append(msg.value())
        if len(attempts) < 3:
            raise Unavailable("store is down")

    loop = ConsumerLoop(
        name="t",
        bootstrap=kafka_bootstrap,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=per_message(handler),
        retry_backoff=(0.01, 0.05),
    )
    t, errors = run_loop(loop)
    wait_for(lambda: len(attempts) >= 3)
    loop.stop()
    t.join(30)
    assert attempts == [b"only"] * 3 and not errors


def test_topics_can_change_at_run_time(kafka_bootstrap, unique):
    first, second = f"{unique}a.device-data", f"{unique}b.device-data"
    ensure_topics(kafka_bootstrap, [first, second])
    got = []
    loop = ConsumerLoop(
        name="t",
        bootstrap=kafka_bootstrap,
        group_id=f"g-{unique}",
        topics=[first],
        handler=per_message(lambda m: got.append((m.topic(), m.value()))),
    )
    t, _ = run_loop(loop)
    produce(kafka_bootstrap, first, [b"1"])
    wait_for(lambda: (first, b"1") in got)
    loop.set_topics([first, second])
    produce(kafka_bootstrap, second, [b"2"])
    wait_for(lambda: (second, b"2") in got)
    loop.stop()
    t.join(30)
