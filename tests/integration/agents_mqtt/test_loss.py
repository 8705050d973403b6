"""Loss test: 100,000 QoS 1 messages from 100 devices while one of two bridge processes (two device shards, each
with its own subscription group, client id and persistent session) is killed with SIGKILL and restarted.

What is asserted is what docs/kafka-contract.md promises for MQTT:
- every message reaches ``<tenant>.device-data`` at least once (the PUBACK follows Kafka's acknowledgement, and
  what the killed process had not acknowledged is redelivered to its session when it comes back);
- each device is forwarded by the process of its shard only, and a duplicate is a redelivery within the killed
  bridge's session: every copy of a message was forwarded by B, and the killed process wrote the first copy;
- each device's order: the first copy of each of its messages, in topic order, has a higher sequence number
  than every message of that device before it.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from confluent_kafka import Consumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from agents.mqtt.bridge import shard_of
from ondas.kafka import consumer_config
from ondas.topics import device_data
from tests.integration.agents_mqtt.conftest import Agent, Stub, device, launch_agent
from tests.servers import Servers
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DEVICES = 100
PER_DEVICE = 1_000
TOTAL = DEVICES * PER_DEVICE
KILL_AFTER = TOTAL * 3 // 10  # forwarded records seen before the kill


class Fleet:
    """One paho client per device (its own identity ``<tenant>:<device>``, as the ACL requires), all in this
    process on paho's loop threads. paho keeps at most 20 QoS 1 messages in flight per client and sends the
    rest in order as PUBACKs come back."""

    def __init__(self, host: str, port: int, tenant: str, device_ids: list[str]) -> None:
        self.tenant = tenant
        self.device_ids = device_ids
        self.clients: list[paho.Client] = []
        self._acked = 0
        self._lock = threading.Lock()
        connected = threading.Semaphore(0)
        for device_id in device_ids:
            c = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=f"{device_id}-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv5
            )
            c.username_pw_set(f"{tenant}:{device_id}", None)
            c.max_queued_messages_set(0)  # no limit: publish() queues what the in-flight window cannot take yet
            c.on_connect = lambda *_: connected.release()
            c.on_publish = self._on_puback
            self.clients.append(c)
            c.connect(host, port)
            c.loop_start()
        for _ in device_ids:
            assert connected.acquire(timeout=30), "a device could not connect"

    def _on_puback(self, *_: Any) -> None:
        with self._lock:
            self._acked += 1

    @property
    def acked(self) -> int:
        with self._lock:
            return self._acked

    def publish_all(self) -> None:
        """Round after round, each device's next message: devices progress together, each one in order."""
        for seq in range(PER_DEVICE):
            for device_id, c in zip(self.device_ids, self.clients, strict=True):
                c.publish(f"{self.tenant}:{device_id}/attrs", json.dumps({"dev": device_id, "seq": seq}), qos=1)

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


class Collector:
    """Every record of ``<tenant>.device-data`` from the beginning (a fresh group), in offset order.

    The embedded broker can let a reader that follows the end of a partition skip records that several
    producers wrote at the same time (a later read from an earlier offset returns them). Offsets of a partition
    written without transactions are consecutive, so the collector notices a gap and reads again from it."""

    def __init__(self, bootstrap: str, tenant: str) -> None:
        self.topic = device_data(tenant)
        self.consumer = Consumer(consumer_config(bootstrap, "test-loss-" + uuid.uuid4().hex))
        self.consumer.subscribe([self.topic])
        self.records: dict[int, dict[int, tuple[str, int, str]]] = defaultdict(dict)  # partition -> offset -> rec
        self.pairs: set[tuple[str, int]] = set()
        self.rereads = 0
        self._contiguous: dict[int, int] = defaultdict(int)  # the first offset not read yet
        self._highest: dict[int, int] = defaultdict(int)

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.records.values())

    def poll(self) -> int:
        for m in self.consumer.consume(10_000, timeout=0.2):
            if m.error() is not None:
                continue
            partition, offset = m.partition(), m.offset()
            assert partition is not None and offset is not None
            if offset in self.records[partition]:
                continue  # read again after a gap
            body = json.loads(m.value() or b"null")
            agent = next((h[1] for h in m.headers() or [] if h[0] == "ondas-agent"), None)
            instance = agent.decode() if isinstance(agent, bytes) else ""
            record = (body["metadata"]["deviceid"], body["attrs"]["seq"], instance)
            self.records[partition][offset] = record
            self._highest[partition] = max(self._highest[partition], offset)
            self.pairs.add(record[:2])
        for partition, records in self.records.items():
            gap = self._contiguous[partition]
            while gap in records:
                gap += 1
            self._contiguous[partition] = gap
            if gap < self._highest[partition]:
                self.rereads += 1
                self.consumer.seek(TopicPartition(self.topic, partition, gap))
        return self.count

    @property
    def contiguous(self) -> bool:
        """No record missing below the highest offset read."""
        return all(self._contiguous[p] > self._highest[p] for p in self.records)

    def in_order(self) -> list[tuple[str, int, str]]:
        """Each partition's records in offset order (a device's records are all on one partition)."""
        return [r for records in self.records.values() for _, r in sorted(records.items())]

    def close(self) -> None:
        self.consumer.close()


@pytest.mark.timeout(600)
def test_no_message_lost_when_one_of_two_bridges_is_killed(
    mosquitto: Servers,
    kafka_bootstrap: str,
    unique: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    device_ids = [f"d{i:03d}" for i in range(DEVICES)]
    stub = Stub()
    stub.tenants = [unique]
    stub.devices[unique] = [device(d) for d in device_ids]
    env = {
        "ONDAS_LOG_LEVEL": "WARNING",
        "MQTT_AGENT_CONSUMER_GROUP": f"mqtt-agent-loss-{uuid.uuid4().hex[:8]}",
        "MQTT_AGENT_SHARDS": "2",
    }
    env_a = {**env, "MQTT_AGENT_SHARD": "0"}
    env_b = {**env, "MQTT_AGENT_SHARD": "1", "MQTT_AGENT_LIVENESS": "off"}  # liveness runs on exactly one process
    id_a, id_b = (f"test-loss-{x}-{uuid.uuid4().hex[:8]}" for x in "ab")
    started: list[Agent] = []
    collector: Collector | None = None
    fleet: Fleet | None = None
    try:
        a = launch_agent(mosquitto, kafka_bootstrap, stub, tmp_path / "a.log", id_a, env_a)
        started.append(a)
        b = launch_agent(mosquitto, kafka_bootstrap, stub, tmp_path / "b.log", id_b, env_b)
        started.append(b)
        collector = Collector(kafka_bootstrap, unique)
        fleet = Fleet(mosquitto.cfg.host, mosquitto.cfg.ports["mqtt"], unique, device_ids)
        publisher = threading.Thread(target=fleet.publish_all, name="fleet")
        publisher.start()

        c = collector
        wait_for(lambda: c.poll() >= KILL_AFTER, timeout=240, what=f"{KILL_AFTER} messages forwarded", interval=0)
        killed_at = collector.count
        b.stop(signal.SIGKILL)
        b2 = launch_agent(mosquitto, kafka_bootstrap, stub, tmp_path / "b.log", id_b, env_b)
        started.append(b2)
        assert killed_at < TOTAL, "every message was forwarded before the kill: the kill tested nothing"

        try:
            wait_for(lambda: c.poll() and len(c.pairs) >= TOTAL, timeout=240, what="every message", interval=0)
        except AssertionError:
            missing = TOTAL - len(collector.pairs)
            raise AssertionError(
                f"{missing} of {TOTAL} messages never reached {device_data(unique)} "
                f"({fleet.acked} acknowledged to the devices by the broker)"
            ) from None
        wait_for(lambda: c.poll() and c.contiguous, timeout=60, what="the records skipped by a read", interval=0)
        publisher.join(60)
        assert fleet.acked == TOTAL

        # Which bridge session forwarded each record: A, or B (the killed process, then its restart).
        by_pid = {str(a.proc.pid): "A", str(b.proc.pid): "B1", str(b2.proc.pid): "B2"}
        records = [(d, seq, by_pid.get(inst.rpartition(":")[2], inst)) for d, seq, inst in collector.in_order()]
        assert {r[2] for r in records} <= {"A", "B1", "B2"}, "a record without a known ondas-agent header"

        # Duplicates are redeliveries within B's session: one session per message, first copy by B1.
        copies: dict[tuple[str, int], list[str]] = defaultdict(list)
        for dev, seq, session in records:
            copies[(dev, seq)].append(session)
        duplicated = {pair: s for pair, s in copies.items() if len(s) > 1}
        duplicates = sum(len(s) - 1 for s in duplicated.values())
        unexplained = {pair: s for pair, s in duplicated.items() if s[0] != "B1" or set(s[1:]) != {"B2"}}
        assert not unexplained, f"duplicates not explained by B's redelivery: {list(unexplained.items())[:10]}"

        # Each device forwarded by its shard's process only.
        shard = {"A": 0, "B1": 1, "B2": 1}
        misrouted = [(dev, session) for dev, _, session in records if shard[session] != shard_of(f"{unique}:{dev}", 2)]
        assert not misrouted, f"devices forwarded by another shard's process: {misrouted[:10]}"

        # Each device's order: the first copy of each message, in topic order, by increasing seq.
        last: dict[str, int] = {}
        seen: set[tuple[str, int]] = set()
        out_of_order: list[tuple[str, str, int, int]] = []
        for dev, seq, session in records:
            if (dev, seq) in seen:
                continue
            seen.add((dev, seq))
            if seq <= last.get(dev, -1):
                out_of_order.append((dev, session, last[dev], seq))
            last[dev] = seq
        assert not out_of_order, f"a device's order broken (device, session, before, after): {out_of_order[:10]}"

        sessions = Counter(first for first, *_ in copies.values())
        summary = (
            f"killed B after {killed_at} records; {len(collector.pairs)} messages, {collector.count} records, "
            f"{duplicates} duplicates (redelivered to B's restarted process), "
            f"first copies by session {dict(sessions)}, "
            f"{collector.rereads} re-reads after a gap"
        )
        print("\n" + summary)
        # A SIGTERM ends the process cleanly (exit 0, its session ended), not a kill after the stop timeout.
        assert a.stop() == 0, f"A did not stop on SIGTERM:\n{a.log_path.read_text()[-3000:]}"
        record_property("duplicates", duplicates)
        record_property("summary", summary)
    finally:
        if fleet is not None:
            fleet.close()
        if collector is not None:
            collector.close()
        for agent in started:
            agent.stop()
        stub.close()
