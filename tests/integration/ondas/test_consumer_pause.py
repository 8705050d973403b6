"""A long outage does not cost the consumer loop its partitions (on the real Kafka-protocol broker): while a
handler keeps failing with a RETRY error, the loop pauses what it is retrying and keeps polling, so the member
stays in its group past the session timeout and ``max.poll.interval.ms``; once the handler succeeds, every message
is handled once, in order, and committed."""

import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import REGISTRY

from ondas.errors import Unavailable
from ondas.kafka import ConsumerLoop, Producer, StopConsuming, consumer_config, ensure_topics, per_message
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SESSION_MS = 6000  # the smallest session a Kafka broker accepts by default (group.min.session.timeout.ms)


def rebalances(group: str, event: str) -> float:
    return REGISTRY.get_sample_value("ondas_kafka_rebalances_total", {"group": group, "event": event}) or 0.0


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = Consumer(consumer_config(bootstrap, group))
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        c.close()


def test_a_handler_failing_longer_than_the_session_keeps_its_partitions_and_loses_nothing(kafka_bootstrap, unique):
    topic = f"{unique}.device-data"
    group = f"g-{unique}"
    ensure_topics(kafka_bootstrap, [topic])
    values = [f"m{i}".encode() for i in range(30)]
    producer = Producer(kafka_bootstrap)
    try:
        for v in values:
            producer.send_and_wait(topic, v, key=b"k")
    finally:
        producer.close()

    handled: list[bytes] = []
    failures: list[float] = []
    outage = 2.5 * SESSION_MS / 1000.0  # the dependency is down well past the session and the poll interval

    def handler(msg):
        if not failures or time.monotonic() - failures[0] < outage:
            failures.append(time.monotonic())
            raise Unavailable("store is down")
        handled.append(msg.value())

    loop = ConsumerLoop(
        name="t",
        bootstrap=kafka_bootstrap,
        group_id=group,
        topics=[topic],
        handler=per_message(handler),
        batch_size=7,
        retry_backoff=(0.2, 1.0),
        consumer_extra={
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": 1000,
            # librdkafka's own limit on the time between two polls (at least the session timeout).
            "max.poll.interval.ms": SESSION_MS,
        },
    )
    errors: list[BaseException] = []

    def run():
        try:
            loop.run()
        except StopConsuming as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(handled) == len(values), timeout=120, what="every message to be handled")
        # Still the first assignment: nothing was revoked or lost during the outage.
        assert rebalances(group, "assigned") == 1
        assert rebalances(group, "revoked") == 0 and rebalances(group, "lost") == 0
        wait_for(lambda: committed(kafka_bootstrap, group, topic) == len(values), what="the offsets to be committed")
    finally:
        loop.stop()
        t.join(30)
    assert not errors
    assert handled == values  # each once, in order, none lost
    assert len(failures) > 1  # the outage really was retried (not one failure and done)


def test_partitions_revoked_during_a_retry_are_read_again_by_their_next_owner(kafka_bootstrap, unique):
    topic = f"{unique}.device-data"
    group = f"g-{unique}"
    ensure_topics(kafka_bootstrap, [topic])
    values = [f"m{i}".encode() for i in range(20)]
    producer = Producer(kafka_bootstrap)
    try:
        for v in values:
            producer.send_and_wait(topic, v, key=b"k")
    finally:
        producer.close()

    healthy = threading.Event()
    handled: dict[str, list[bytes]] = {"first": [], "second": []}

    def handler_of(name):
        def handle(msg):
            if not healthy.is_set():
                raise Unavailable("store is down")
            handled[name].append(msg.value())

        return handle

    def loop_of(name):
        return ConsumerLoop(
            name=name,
            bootstrap=kafka_bootstrap,
            group_id=group,
            topics=[topic],
            handler=per_message(handler_of(name)),
            retry_backoff=(0.2, 0.5),
        )

    first, second = loop_of("first"), loop_of("second")
    threads = [threading.Thread(target=loop.run, daemon=True) for loop in (first, second)]
    threads[0].start()
    try:
        wait_for(lambda: first.last_error is not None, what="the first member to be retrying")
        threads[1].start()  # a second member joins: the group rebalances while the first one is paused
        wait_for(lambda: rebalances(group, "revoked") >= 1, what="a revocation during the retry")
        healthy.set()
        wait_for(lambda: len(handled["first"]) + len(handled["second"]) == len(values), what="every message handled")
        wait_for(lambda: committed(kafka_bootstrap, group, topic) == len(values), what="the offsets to be committed")
    finally:
        for loop in (first, second):
            loop.stop()
        for t in threads:
            t.join(30)
    # The abandoned batch was neither handled nor committed by the member that lost it: its next owner read it
    # from the committed offset, so every message was handled once, in order.
    owner = handled["first"] or handled["second"]
    assert owner == values
    assert not (handled["first"] and handled["second"])
