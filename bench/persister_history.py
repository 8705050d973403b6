"""Persister and history benchmark, each figure next to the raw driver doing the same work on the same store.
Run on demand, never by the test suite:

    .venv/bin/python -m bench.persister_history [--messages 100000] [--devices 100] [--points 10000000]

It starts its own Kafka-protocol broker and MongoDB-compatible store (the way the tests do: free ports, a
throw-away folder), runs the real processes (``python -m persister``, ``python -m history``) and prints a table:

- **persister sustained points/s**: ``--messages`` device-data messages (one attribute each, from ``--devices``
  devices) produced first, then the time from the persister's start until every point is stored; against
  ``insert_many`` of the same documents, in batches of the persister's size, into the same store.
- **history lastN=100 at ``--points``**: p50/p99 of ``GET /device/{id}/history?lastN=100&attr=...`` over HTTP
  (token check, query, JSON) for random devices, once the store holds that many points; against the raw
  driver query the store runs (``find(device, attr).sort(ts desc).limit(100)``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymongo
import requests
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from bench.common import percentile, print_table, wait_until
from ondas.kafka import ensure_topics, producer_config
from ondas.tenant import tenant_database_name
from ondas.topics import device_data
from ondasctl.ports import free_port
from persister.models import Point
from persister.settings import DEFAULT_DB_PREFIX
from persister.store_mongo import point_document
from tests.integration.persister.test_persister import AuthStub
from tests.servers import Servers
from tests.tokens import TokenMaker

T0_MS = 1_700_000_000_000
BATCH = 2000


@contextmanager
def _process(module: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", module], env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def points_written(health_port: int, tenant: str) -> float:
    """``persister_points_written_total`` of the tenant, from the persister's metrics (0 while it is starting)."""
    try:
        text = requests.get(f"http://127.0.0.1:{health_port}/metrics", timeout=5).text
    except requests.ConnectionError:
        return 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "persister_points_written_total" and sample.labels.get("tenant") == tenant:
                return float(sample.value)
    return 0.0


def messages(tenant: str, count: int, devices: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for i in range(count):
        device = f"dev{i % devices:05d}"
        yield device, {"metadata": {"deviceid": device, "tenant": tenant, "timestamp": T0_MS + i}, "attrs": {"v": i}}


def bench_persister(servers: Servers, work: Path, count: int, devices: int) -> tuple[float, float]:
    cfg = servers.ensure("kafka")
    servers.ensure("mongo")
    tenant = "bench" + os.urandom(3).hex()
    topic = device_data(tenant)
    ensure_topics(cfg.kafka_bootstrap, [topic])
    producer = Producer(producer_config(cfg.kafka_bootstrap, **{"linger.ms": 20}))
    for key, body in messages(tenant, count, devices):
        while True:
            try:
                producer.produce(topic, json.dumps(body).encode(), key=key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0

    auth = AuthStub([tenant])
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(cfg.mongo_url)
    health_port = free_port()
    env = {
        "ONDAS_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap,
        "ONDAS_AUTH_URL": auth.url,
        "ONDAS_LOG_LEVEL": "WARNING",
        "PERSISTER_MONGO_URL": cfg.mongo_url,
        "PERSISTER_HEALTH_PORT": str(health_port),
        "PERSISTER_KAFKA_BATCH_SIZE": str(BATCH),
    }

    # Progress is read from the persister's own counter, not from the store: counting documents is a full scan on
    # the embedded store (measured: 650 ms at 50,000 documents), and polling it would load the very store the
    # persister writes to.
    def written() -> float:
        return points_written(health_port, tenant)

    try:
        with _process("persister", env, work / "persister.log"):
            wait_until(lambda: written() > 0, 120, "the first point")
            started, first = time.perf_counter(), written()
            wait_until(lambda: written() >= count, 1800, "every point", interval=0.01)
            elapsed = time.perf_counter() - started
            # Everything in the first batch: no interval to measure between batches.
            persister_rate = (count - first) / elapsed if count > first else float("nan")
    finally:
        auth.close()

    raw = client["bench_raw_" + tenant]["points"]
    raw.create_index([("device_id", 1), ("attr", 1), ("ts", -1)])
    docs = [
        point_document(Point(body["metadata"]["deviceid"], "v", body["attrs"]["v"], body["metadata"]["timestamp"]))
        for _, body in messages(tenant, count, devices)
    ]
    started = time.perf_counter()
    for i in range(0, len(docs), BATCH):
        raw.insert_many(docs[i : i + BATCH], ordered=False)
    raw_rate = count / (time.perf_counter() - started)
    client.drop_database("bench_raw_" + tenant)
    client.close()
    return persister_rate, raw_rate


def load_points(mongo_url: str, tenant: str, total: int, devices: int) -> None:
    """``total`` points of attribute ``v`` spread over ``devices`` devices, in the persister's layout."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    db = client[tenant_database_name(DEFAULT_DB_PREFIX, tenant)]
    per_device = total // devices
    done, started = 0, time.perf_counter()
    for i in range(per_device):
        batch = [point_document(Point(f"dev{d:05d}", "v", i, T0_MS + i)) for d in range(devices)]
        for start in range(0, len(batch), 10_000):
            db["points"].insert_many(batch[start : start + 10_000], ordered=False)
        done += len(batch)
        if i % max(1, per_device // 20) == 0:
            print(f"  loaded {done:,} points ({done / (time.perf_counter() - started):,.0f}/s)", flush=True)
    last = [point_document(Point(f"dev{d:05d}", "v", per_device - 1, T0_MS + per_device - 1)) for d in range(devices)]
    for doc in last:
        doc["_id"] = json.dumps([doc["device_id"], "v"], separators=(",", ":"))
    db["latest"].insert_many(last)
    # Building the index once the points are in is about a quarter faster on the embedded store than keeping it
    # up to date through the load (measured: 3.9k docs/s + 11.7k/s build against 2.4k docs/s).
    print("  building the (device_id, attr, ts) index ...", flush=True)
    db["points"].create_index([("device_id", 1), ("attr", 1), ("ts", -1)], name="device_attr_ts")
    db["latest"].create_index([("device_id", 1)], name="device")
    client.close()


def bench_history(servers: Servers, work: Path, total: int, devices: int, runs: int) -> tuple[list[float], list[float]]:
    cfg = servers.ensure("mongo")
    tenant = "hist" + os.urandom(3).hex()
    load_points(cfg.mongo_url, tenant, total, devices)
    tokens = TokenMaker(work / "keys")
    port = free_port()
    env = {
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_LOG_LEVEL": "WARNING",
        "HISTORY_MONGO_URL": cfg.mongo_url,
        "HISTORY_HTTP_PORT": str(port),
    }
    rng = random.Random(7)
    api_ms: list[float] = []
    raw_ms: list[float] = []
    with _process("history", env, work / "history.log"):
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(base + "/health/ready"), 60, "history")
        session = requests.Session()
        session.headers.update(tokens.headers(tenant))
        for _ in range(runs):
            url = f"{base}/device/dev{rng.randrange(devices):05d}/history?lastN=100&attr=v"
            started = time.perf_counter()
            resp = session.get(url, timeout=30)
            api_ms.append((time.perf_counter() - started) * 1000)
            assert resp.status_code == 200 and len(resp.json()) == 100, resp.text[:200]
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(cfg.mongo_url)
    points = client[tenant_database_name(DEFAULT_DB_PREFIX, tenant)]["points"]
    for _ in range(runs):
        device = f"dev{rng.randrange(devices):05d}"
        started = time.perf_counter()
        found = list(points.find({"device_id": device, "attr": "v"}).sort([("ts", -1), ("_id", -1)]).limit(100))
        raw_ms.append((time.perf_counter() - started) * 1000)
        assert len(found) == 100
    client.close()
    return api_ms, raw_ms


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="device-data messages for the persister")
    parser.add_argument("--devices", type=int, default=100, help="devices sending them")
    parser.add_argument("--points", type=int, default=10_000_000, help="points stored before querying history")
    parser.add_argument("--history-devices", type=int, default=1000, help="devices holding those points")
    parser.add_argument("--runs", type=int, default=500, help="history queries measured")
    args = parser.parse_args()

    servers = Servers()
    work = Path(tempfile.mkdtemp(prefix="ondas-bench-"))
    try:
        print(f"persister: {args.messages:,} messages from {args.devices} devices ...", flush=True)
        persister_rate, raw_rate = bench_persister(servers, work, args.messages, args.devices)
        print(f"history: loading {args.points:,} points over {args.history_devices} devices ...", flush=True)
        api_ms, raw_ms = bench_history(servers, work, args.points, args.history_devices, args.runs)
    finally:
        servers.stop()

    api50, api99 = percentile(api_ms, 0.5), percentile(api_ms, 0.99)
    raw50, raw99 = percentile(raw_ms, 0.5), percentile(raw_ms, 0.99)
    at = f"history lastN=100 at {args.points:,} points"
    rows = [
        ("persister sustained", f"{persister_rate:,.0f} points/s", f"{raw_rate:,.0f} docs/s (insert_many)",
         f"{persister_rate / raw_rate:.0%}"),
        (f"{at}, p50", f"{api50:.1f} ms", f"{raw50:.1f} ms (driver find)", f"{api50 / raw50:.1f}x"),
        (f"{at}, p99", f"{api99:.1f} ms", f"{raw99:.1f} ms (driver find)", f"{api99 / raw99:.1f}x"),
    ]  # fmt: skip
    header = ("measure", "ondas", "raw store, same work", "ratio")
    print_table(header, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
