"""MQTT agent benchmark, each figure next to a ceiling measured in the same run on the same broker.
Run on demand, never by the test suite:

    .venv/bin/python -m bench.agents_mqtt [--messages 100000] [--publishers 20] [--devices 10000] [--duration 90]

It starts its own Kafka-protocol broker and Mosquitto the way the tests do (free ports, a throw-away folder),
a stub of the two device-manager/auth routes the agent reads (the device list), the real agent process
(``python -m agents.mqtt``), and prints one table:

- **sustained QoS 1 ingest**: ``--publishers`` devices publish ``--messages`` QoS 1 messages in all, as fast as
  the broker acknowledges them; the rate is counted from the first publish until the last message is on
  ``<tenant>.device-data`` (read back by a Kafka consumer). Ceiling: the same publishers and messages through the
  same Mosquitto to one raw MQTT subscriber on the internal listener (no agent), first publish to last delivery.
  Measured with one agent process, then with ``--shards`` processes splitting the devices (``MQTT_AGENT_SHARDS``;
  each process is sent every message and forwards its own shard's).
- **publish -> /config round trip** at dojot's load-test profile: ``--devices`` connected devices, each
  publishing one QoS 1 message every ``--interval`` s (30 s) for ``--duration`` s, subscribed to their own
  ``/config`` topic. An actuation loopback reads each message from ``<tenant>.device-data`` and answers with a
  ``configure`` device event; the agent publishes it on the device's ``/config`` topic. p50/p99 of publish ->
  config received. Ceiling: the same fleet with a raw MQTT client that republishes each attrs message straight
  to the device's ``/config`` topic (the broker's own round trip, no Kafka, no agent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from confluent_kafka import Consumer, Producer
from gmqtt import Client as GClient
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import percentile, print_table, wait_until
from ondas.kafka import consumer_config, ensure_topics, producer_config
from ondas.topics import device_data, device_events
from ondasctl.infra import MQTT_AGENT_USER
from tests.integration.agents_mqtt.conftest import Agent, Stub, device, launch_agent
from tests.servers import Servers


def publish_all(host: str, port: int, tenant: str, devices: list[str], total: int) -> float:
    """Publish ``total`` QoS 1 messages spread over ``devices`` (one paho client each); returns the start time."""
    per_device = total // len(devices)
    acked = [0]
    lock = threading.Lock()
    clients = []
    for d in devices:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{d}-{uuid.uuid4().hex[:6]}")
        c.username_pw_set(f"{tenant}:{d}", None)
        c.max_inflight_messages_set(50)
        c.max_queued_messages_set(0)

        def on_publish(*_: Any) -> None:
            with lock:
                acked[0] += 1

        c.on_publish = on_publish
        c.connect(host, port)
        c.loop_start()
        clients.append(c)
    wait_until(lambda: all(c.is_connected() for c in clients), 30, "publishers connected")
    start = time.monotonic()

    def run(c: paho.Client, d: str) -> None:
        topic = f"{tenant}:{d}/attrs"
        for seq in range(per_device):
            c.publish(topic, json.dumps({"seq": seq}), qos=1)

    threads = [threading.Thread(target=run, args=(c, d)) for c, d in zip(clients, devices, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: acked[0] >= per_device * len(devices), 600, "every PUBACK")
    for c in clients:
        c.disconnect()
        c.loop_stop()
    return start


def raw_ingest(servers: Servers, tenant: str, devices: list[str], total: int) -> float:
    cfg = servers.cfg
    received = [0]
    last = [0.0]
    got = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-" + uuid.uuid4().hex[:6])
    sub.username_pw_set(MQTT_AGENT_USER, cfg.secret("mqtt-agent"))

    def on_message(*_: Any) -> None:
        received[0] += 1
        last[0] = time.monotonic()

    sub.on_message = on_message
    sub.on_subscribe = lambda *_: got.set()
    sub.connect(cfg.host, cfg.ports["mqtt_internal"])
    sub.loop_start()
    sub.subscribe("+/attrs", qos=1)
    got.wait(10)
    expected = (total // len(devices)) * len(devices)
    start = publish_all(cfg.host, cfg.ports["mqtt"], tenant, devices, total)
    wait_until(lambda: received[0] >= expected, 600, "raw deliveries")
    sub.disconnect()
    sub.loop_stop()
    return expected / (last[0] - start)


def agent_ingest(servers: Servers, bootstrap: str, tenant: str, devices: list[str], total: int) -> float:
    cfg = servers.cfg
    expected = (total // len(devices)) * len(devices)
    consumer = Consumer(consumer_config(bootstrap, "bench-" + uuid.uuid4().hex))
    consumer.subscribe([device_data(tenant)])
    wait_until(lambda: bool(consumer.consume(1, timeout=0.2) is not None and consumer.assignment()), 60, "assignment")
    seen = 0
    last = 0.0
    start = publish_all(cfg.host, cfg.ports["mqtt"], tenant, devices, total)
    deadline = time.monotonic() + 900
    while seen < expected and time.monotonic() < deadline:
        for m in consumer.consume(1000, timeout=0.2):
            if m.error() is None:
                seen += 1
                last = time.monotonic()
    consumer.close()
    if seen < expected:
        raise RuntimeError(f"only {seen} of {expected} messages reached Kafka")
    return expected / (last - start)


# -- round trip at the load-test profile ----------------------------------------------------------------------
class Fleet:
    """``n`` gmqtt devices in one event loop, each subscribed to its own /config topic."""

    def __init__(self, host: str, port: int, tenant: str, ids: list[str]) -> None:
        self.host, self.port, self.tenant, self.ids = host, port, tenant, ids
        self.clients: dict[str, GClient] = {}
        self.latencies: list[float] = []
        self.sent = 0

    async def connect(self, concurrency: int = 200) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(d: str) -> None:
            async with gate:
                c = GClient(f"{d}-{uuid.uuid4().hex[:6]}")
                c.set_auth_credentials(f"{self.tenant}:{d}", None)
                subscribed = asyncio.Event()
                c.on_subscribe = lambda *_: subscribed.set()
                c.on_message = self._on_message
                await c.connect(self.host, self.port, keepalive=120)
                c.subscribe(f"{self.tenant}:{d}/config", qos=1)
                await asyncio.wait_for(subscribed.wait(), 60)
                self.clients[d] = c

        await asyncio.gather(*(one(d) for d in self.ids))

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        try:
            t0 = json.loads(payload)["t0"]
        except (ValueError, KeyError, TypeError):
            return 0
        self.latencies.append((time.time_ns() - int(t0)) / 1e6)
        return 0

    async def run(self, interval: float, duration: float) -> None:
        async def device_loop(d: str, c: GClient) -> None:
            await asyncio.sleep(random.uniform(0, interval))
            end = time.monotonic() + duration
            while time.monotonic() < end:
                c.publish(f"{self.tenant}:{d}/attrs", json.dumps({"t0": time.time_ns()}), qos=1)
                self.sent += 1
                await asyncio.sleep(interval)

        await asyncio.gather(*(device_loop(d, c) for d, c in self.clients.items()))
        deadline = time.monotonic() + 30
        while len(self.latencies) < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        await asyncio.gather(*(c.disconnect() for c in self.clients.values()), return_exceptions=True)


def raw_loopback(servers: Servers, tenant: str) -> Callable[[], None]:
    """Republish every attrs message straight to the device's /config topic; returns a stop function."""
    cfg = servers.cfg
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-loop-" + uuid.uuid4().hex[:6])
    c.username_pw_set(MQTT_AGENT_USER, cfg.secret("mqtt-agent"))
    c.max_inflight_messages_set(1000)
    got = threading.Event()
    c.on_subscribe = lambda *_: got.set()
    c.on_message = lambda _c, _u, m: c.publish(m.topic[: -len("attrs")] + "config", m.payload, qos=1)
    c.connect(cfg.host, cfg.ports["mqtt_internal"])
    c.loop_start()
    c.subscribe("+/attrs", qos=1)
    got.wait(10)

    def stop() -> None:
        c.disconnect()
        c.loop_stop()

    return stop


def kafka_loopback(bootstrap: str, tenant: str) -> Callable[[], None]:
    """The actuation loopback: each device-data message comes back as a ``configure`` event for its device."""
    stop = threading.Event()

    def run() -> None:
        consumer = Consumer(consumer_config(bootstrap, "bench-loop-" + uuid.uuid4().hex))
        consumer.subscribe([device_data(tenant)])
        producer = Producer(producer_config(bootstrap))
        while not stop.is_set():
            for m in consumer.consume(500, timeout=0.1):
                if m.error() is not None:
                    continue
                msg = json.loads(m.value() or b"{}")
                if "t0" not in msg.get("attrs", {}):
                    continue  # the ingest phase's messages
                dev = msg["metadata"]["deviceid"]
                event = {
                    "event": "configure",
                    "meta": {"service": tenant, "timestamp": int(time.time() * 1000)},
                    "data": {"id": dev, "attrs": {"t0": msg["attrs"]["t0"]}},
                }
                producer.produce(device_events(tenant), json.dumps(event).encode(), key=dev)
            producer.poll(0)
        producer.flush(10)
        consumer.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def halt() -> None:
        stop.set()
        t.join(30)

    return halt


def round_trip(servers: Servers, tenant: str, ids: list[str], interval: float, duration: float) -> tuple[float, ...]:
    cfg = servers.cfg

    async def go() -> tuple[float, ...]:
        fleet = Fleet(cfg.host, cfg.ports["mqtt"], tenant, ids)
        t = time.monotonic()
        await fleet.connect()
        connect_s = time.monotonic() - t
        await fleet.run(interval, duration)
        await fleet.close()
        lat = fleet.latencies
        return connect_s, float(fleet.sent), float(len(lat)), percentile(lat, 0.5), percentile(lat, 0.99)

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--shards", type=int, default=2, help="agent processes of the second ingest run")
    args = ap.parse_args()

    tenant = "bench" + uuid.uuid4().hex[:6]
    tenant2 = tenant + "s"  # the sharded ingest run's, so its count starts from an empty topic
    servers = Servers()
    stub = Stub()
    agent: Agent | None = None
    sharded: list[Agent] = []
    rows: list[tuple[str, str, str]] = []
    try:
        servers.ensure("kafka")
        servers.ensure("mosquitto")
        bootstrap = f"{servers.cfg.host}:{servers.cfg.ports['kafka']}"
        ensure_topics(bootstrap, [device_data(t) for t in (tenant, tenant2)] + [device_events(tenant)])
        ids = [f"dev{i:05d}" for i in range(max(args.devices, args.publishers))]
        stub.tenants = [tenant, tenant2]
        stub.devices[tenant] = [device(d) for d in ids]
        stub.devices[tenant2] = [device(d) for d in ids[: args.publishers]]
        publishers = ids[: args.publishers]

        print(f"ingest ceiling: raw Mosquitto QoS 1, {args.messages} messages from {args.publishers} devices ...")
        raw = raw_ingest(servers, tenant, publishers, args.messages)
        log_path = Path(tempfile.mkdtemp(prefix="bench-mqtt-")) / "agent.log"
        agent = launch_agent(servers, bootstrap, stub, log_path, "bench-agent-" + uuid.uuid4().hex[:6])
        print(f"ingest through the agent into Kafka (agent log: {log_path}) ...")
        through = agent_ingest(servers, bootstrap, tenant, publishers, args.messages)
        rows.append(("sustained QoS 1 ingest, msg/s", f"{through:,.0f}", f"{raw:,.0f} (raw Mosquitto pub/sub)"))
        if args.shards > 1:
            agent.stop()
            agent = None
            group = "bench-shards-" + uuid.uuid4().hex[:6]
            for i in range(args.shards):
                env = {"MQTT_AGENT_SHARDS": str(args.shards), "MQTT_AGENT_SHARD": str(i)}
                env |= {"MQTT_AGENT_CONSUMER_GROUP": group, "MQTT_AGENT_LIVENESS": "on" if i == 0 else "off"}
                sharded.append(launch_agent(servers, bootstrap, stub, log_path, f"{group}-{i}", env))
            print(f"ingest through {args.shards} agent processes, one shard each ...")
            split = agent_ingest(servers, bootstrap, tenant2, publishers, args.messages)
            rows.append(
                (f"  the same, {args.shards} shard processes, msg/s", f"{split:,.0f}", f"{raw:,.0f} (same ceiling)")
            )
            for a in sharded:
                a.stop()
            sharded.clear()
            agent = launch_agent(servers, bootstrap, stub, log_path, "bench-agent-" + uuid.uuid4().hex[:6])

        fleet = ids[: args.devices]
        print(f"round trip through the agent: {len(fleet)} devices, one message each every {args.interval} s ...")
        stop_loop = kafka_loopback(bootstrap, tenant)
        try:
            a = round_trip(servers, tenant, fleet, args.interval, args.duration)
        finally:
            stop_loop()
        agent.stop()
        agent = None
        print("round-trip ceiling: the same fleet, raw MQTT loopback (no agent, no Kafka) ...")
        stop_raw = raw_loopback(servers, tenant)
        try:
            r = round_trip(servers, tenant, fleet, args.interval, args.duration)
        finally:
            stop_raw()
        rows.append((f"{len(fleet)} devices connect, s", f"{a[0]:.1f}", f"{r[0]:.1f}"))
        rows.append(("round trips answered / sent", f"{a[2]:,.0f} / {a[1]:,.0f}", f"{r[2]:,.0f} / {r[1]:,.0f}"))
        rows.append(("publish -> /config p50, ms", f"{a[3]:.1f}", f"{r[3]:.1f}"))
        rows.append(("publish -> /config p99, ms", f"{a[4]:.1f}", f"{r[4]:.1f}"))
    finally:
        for a in [*sharded, *([agent] if agent is not None else [])]:
            a.stop()
        stub.close()
        servers.stop()

    print()
    print_table(("measure", "through the agent", "ceiling (same run)"), rows)


if __name__ == "__main__":
    main()
