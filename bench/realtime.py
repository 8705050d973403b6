"""Real-time data benchmark: publish -> websocket (and socket.io) delivery, next to a raw Kafka consumer's publish
-> consume latency on the same topic in the same run. Run on demand, never by the test suite:

    .venv/bin/python -m bench.realtime [--subscribers 1000] [--sio-clients 200] [--rate 5] [--duration 30]

It starts the whole platform the way a user does (``python -m ondasctl up`` in a throw-away data directory on
free ports, the same ``Platform`` as ``bench.auth_gateway``), creates one device through the gateway, then:

- **raw Kafka consumer (ceiling)**: a confluent-kafka consumer in this process, assigned to the tenant's
  ``device-data`` topic at its end, reads every message the whole run long. Its latency is MQTT publish ->
  consumed: Mosquitto, the MQTT agent and the broker, what kafka_ws has to wait for too.
- **websocket**: ``--subscribers`` websockets through the gateway, each with its own ticket, on
  ``<tenant>.device-data?fields=attrs``, held by ``--client-procs`` client processes (asyncio, ``websockets``);
- **socket.io**: ``--sio-clients`` python-socketio clients through the gateway on ``all``.

For each of the two runs, once every client is connected, one MQTT device publishes QoS 1 messages at ``--rate``
per second for ``--duration`` seconds; each carries its send time. Every client records, for each message it
gets, receive time - send time. The table shows per interface the subscribers, messages published, deliveries
expected (published x subscribers) and made, deliveries per second, p50/p99 latency and the clients the server
closed as slow (and, by close code, any other connection the server ended). Clients, the platform and the broker
share the machine's cores: compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import threading
import time
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import paho.mqtt.client as paho
import requests
from confluent_kafka import Consumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from bench.auth_gateway import Platform
from bench.common import percentile, print_table
from ondas.kafka import consumer_config

TEMPLATE = {
    "label": "realtime bench",
    "attrs": [
        {"label": "seq", "type": "dynamic", "value_type": "integer"},
        {"label": "sent", "type": "dynamic", "value_type": "float"},
    ],
}


def _latency_ms(attrs: dict[str, Any], now: float) -> tuple[int, float] | None:
    if not isinstance(attrs, dict) or "sent" not in attrs or "seq" not in attrs:
        return None
    return int(attrs["seq"]), (now - float(attrs["sent"])) * 1000.0


# -- client processes --------------------------------------------------------------------------------------------
def ws_clients(ticket_url: str, headers: dict[str, str], urls: list[str], ready: Any, stop: MpEvent, out: Any) -> None:
    """For each URL take a ticket (single use, 60 s), open the websocket with it and hold it; report (seq, latency
    ms) of every frame and the close codes of the connections the server ended, when ``stop`` is set."""
    import websockets

    async def run() -> None:
        samples: list[tuple[int, float]] = []
        closed: dict[str, int] = {}
        session = requests.Session()

        def ticket() -> str:
            r = session.get(ticket_url, headers=headers, timeout=30)
            r.raise_for_status()
            return str(r.json()["ticket"])

        async def one(url: str) -> None:
            async with websockets.connect(
                f"{url}&ticket={await asyncio.to_thread(ticket)}", open_timeout=60, max_queue=None
            ) as ws:
                ready.put(1)
                try:
                    async for frame in ws:
                        got = _latency_ms(json.loads(frame).get("attrs", {}), time.time())
                        if got is not None:
                            samples.append(got)
                except websockets.ConnectionClosed:
                    pass
                if not stop.is_set():
                    code = str(ws.close_code)
                    closed[code] = closed.get(code, 0) + 1

        tasks = []
        for url in urls:  # one at a time, as clients come: a ticket is used right after it was issued
            tasks.append(asyncio.create_task(one(url)))
            await asyncio.sleep(0.005)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put((samples, closed))

    asyncio.run(run())


def sio_clients(base: str, tokens: list[str], ready: Any, stop: MpEvent, out: Any) -> None:
    import socketio

    async def run() -> None:
        samples: list[tuple[int, float]] = []
        clients = []

        async def on_all(data: Any) -> None:
            got = _latency_ms(data.get("attrs", {}) if isinstance(data, dict) else {}, time.time())
            if got is not None:
                samples.append(got)

        for token in tokens:
            sio = socketio.AsyncClient(reconnection=False)
            sio.on("all", on_all)
            await sio.connect(f"{base}?token={token}", transports=["websocket"], wait_timeout=60)
            clients.append(sio)
            ready.put(1)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        disconnected = sum(1 for c in clients if not c.connected)
        for sio in clients:
            await sio.disconnect()
        out.put((samples, {"disconnected": disconnected} if disconnected else {}))

    asyncio.run(run())


# -- the run -----------------------------------------------------------------------------------------------------
class RawConsumer:
    """Reads the topic from its end for the whole run and keeps (seq, latency ms) per message."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.samples: dict[int, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(consumer_config(bootstrap, f"bench-realtime-{time.time_ns()}"))
        metadata = self._consumer.list_topics(topic, timeout=10)
        starts = []
        for p in metadata.topics[topic].partitions:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            starts.append(TopicPartition(topic, p, high))
        self._consumer.assign(starts)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, timeout=0.05):
                if msg.error() is None and msg.value():
                    got = _latency_ms(json.loads(msg.value()).get("attrs", {}), time.time())
                    if got is not None:
                        self.samples.setdefault(got[0], got[1])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def publish(host: str, port: int, identity: str, first_seq: int, rate: float, duration: float) -> int:
    """QoS 1 messages at ``rate`` per second for ``duration`` seconds; the number published."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-rt-{time.time_ns()}")
    client.username_pw_set(identity, None)
    client.connect(host, port)
    client.loop_start()
    count = int(rate * duration)
    start = time.monotonic()
    infos = []
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = json.dumps({"seq": first_seq + i, "sent": time.time()})
        infos.append(client.publish(f"{identity}/attrs", body, qos=1))
    for info in infos:
        info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()
    return count


def run_clients(
    target: Any, shares: list[Any], extra: tuple[Any, ...], wait_ready: int, send: Any
) -> tuple[list[tuple[int, float]], dict[str, int]]:
    """Start one client process per share, wait for ``wait_ready`` connections, call ``send()``, wait for the
    deliveries to drain, and return every sample and the connections the server ended (by close code)."""
    ctx = multiprocessing.get_context("spawn")
    ready, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=target, args=(*extra, share, ready, stop, out), daemon=True) for share in shares]
    for proc in procs:
        proc.start()
    for _ in range(wait_ready):
        ready.get(timeout=300)
    time.sleep(1.0)  # the last subscriptions reach the fan-out
    published = send()
    time.sleep(min(10.0, 2.0 + published / 100))  # the last deliveries arrive
    stop.set()
    samples: list[tuple[int, float]] = []
    closed: dict[str, int] = {}
    for _ in procs:
        got, gone = out.get(timeout=120)
        samples.extend(got)
        for code, n in gone.items():
            closed[code] = closed.get(code, 0) + n
    for proc in procs:
        proc.join(30)
    return samples, closed


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000, help="websocket subscribers")
    parser.add_argument("--sio-clients", type=int, default=200, help="socket.io clients (0: no socket.io run)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes holding the connections")
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second published over MQTT")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of publishing per run")
    args = parser.parse_args(argv)

    platform = Platform()
    print("==> starting the platform (ondasctl up)", flush=True)
    platform.start()
    raw: RawConsumer | None = None
    try:
        gw = platform.gateway
        headers = {"Authorization": f"Bearer {platform.token()}"}
        template = requests.post(f"{gw}/template", json=TEMPLATE, headers=headers, timeout=30).json()["template"]
        body = {"templates": [str(template["id"])], "label": "rt-bench"}
        device = requests.post(f"{gw}/device", json=body, headers=headers, timeout=30).json()["devices"][0]["id"]
        tenant = "admin"  # the seeded admin's tenant
        identity = f"{tenant}:{device}"
        topic = f"{tenant}.device-data"
        mqtt_port = int(platform.status["mqtt_port"])
        kws = platform.service_url("kafka-ws")
        raw = RawConsumer(platform.status["kafka_bootstrap"], topic)
        ws_base = gw.replace("http://", "ws://", 1)
        rows = []
        seq = [0]

        def send() -> int:
            n = publish("127.0.0.1", mqtt_port, identity, seq[0], args.rate, args.duration)
            seq[0] += n
            return n

        procs = max(1, args.client_procs)

        def ws_shares() -> list[Any]:
            # each client process takes the ticket of a connection right before it opens it (they live 60 s)
            urls = [f"{ws_base}/kafka-ws/v1/topics/{topic}?fields=attrs"] * args.subscribers
            return [urls[i::procs] for i in range(procs)]

        def sio_shares() -> list[Any]:
            with requests.Session() as s:
                tokens = []
                for _ in range(args.sio_clients):
                    r = s.get(f"{gw}/stream/socketio", headers=headers, timeout=30)
                    r.raise_for_status()
                    tokens.append(r.json()["token"])
            return [tokens[i::procs] for i in range(procs)]

        runs: list[tuple[str, int, Any, Any, tuple[Any, ...]]] = [
            ("websocket", args.subscribers, ws_clients, ws_shares, (f"{gw}/kafka-ws/v1/ticket", headers))
        ]
        if args.sio_clients:
            runs.append(("socket.io", args.sio_clients, sio_clients, sio_shares, (gw,)))

        for name, subscribers, target, prepare, extra in runs:
            print(f"==> {name}: {subscribers} clients, {args.rate:g} msg/s for {args.duration:g} s", flush=True)
            shares = prepare()
            first = seq[0]
            slow_before = metric(kws, "kafka_ws_slow_clients_total")
            t0 = time.monotonic()
            samples, closed = run_clients(target, shares, extra, subscribers, send)
            published = seq[0] - first
            elapsed = time.monotonic() - t0
            slow = metric(kws, "kafka_ws_slow_clients_total") - slow_before
            ended = ", ".join(f"{n} x {code}" for code, n in sorted(closed.items()))
            raw_lat = [v for k, v in raw.samples.items() if first <= k < seq[0]]
            rows.append(
                [
                    f"raw Kafka consumer (ceiling, {name} run)",
                    "1",
                    str(published),
                    str(published),
                    str(len(raw_lat)),
                    f"{len(raw_lat) / args.duration:.0f}",
                    f"{percentile(raw_lat, 0.5):.1f}",
                    f"{percentile(raw_lat, 0.99):.1f}",
                    "-",
                ]
            )
            lat = [v for _, v in samples]
            rows.append(
                [
                    f"{name} through the gateway",
                    str(subscribers),
                    str(published),
                    str(published * subscribers),
                    str(len(samples)),
                    f"{len(samples) / args.duration:.0f}",
                    f"{percentile(lat, 0.5):.1f}",
                    f"{percentile(lat, 0.99):.1f}",
                    f"{slow:.0f}" + (f" (ended: {ended})" if ended else ""),
                ]
            )
            print(f"    done in {elapsed:.0f} s", flush=True)
        print()
        print_table(
            [
                "delivery",
                "subscribers",
                "published",
                "expected",
                "delivered",
                "delivered/s",
                "p50 ms",
                "p99 ms",
                "closed as slow",
            ],
            rows,
        )
    finally:
        if raw is not None:
            raw.close()
        platform.stop()


if __name__ == "__main__":
    main()
