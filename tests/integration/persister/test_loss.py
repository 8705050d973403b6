"""Loss test: 100,000 device-data messages while the persister process is killed with SIGKILL twice.

The persister commits offsets only after a batch is durable and point ids are deterministic, so after the
kills and restarts the store holds every message exactly once, and each device's points keep their order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
import requests
from confluent_kafka import Producer

from ondas.kafka import ensure_topics, producer_config
from ondas.tenant import tenant_database_name
from ondas.topics import device_data
from ondasctl.ports import free_port
from tests.integration.persister.test_persister import AuthStub, committed
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

PREFIX = "ondas_history_"
DEVICES = 100
PER_DEVICE = 1_000
TOTAL = DEVICES * PER_DEVICE
T0_MS = 1_700_000_000_000


class PersisterProcess:
    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env = env
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env["PERSISTER_HEALTH_PORT"])

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "persister"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def duplicates(self) -> float:
        text = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("persister_points_duplicate_total{")
        )


@pytest.fixture
def persister(kafka_bootstrap: str, mongo_url: str, unique: str, tmp_path: Path) -> Iterator[PersisterProcess]:
    auth = AuthStub([unique])
    env = {
        **os.environ,
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_AUTH_URL": auth.url,
        "ONDAS_LOG_LEVEL": "WARNING",
        "PERSISTER_MONGO_URL": mongo_url,
        "PERSISTER_HEALTH_PORT": str(free_port()),
        "PERSISTER_KAFKA_GROUP": f"persister-loss-{unique}",
    }
    p = PersisterProcess(env, tmp_path / "persister.log")
    try:
        yield p
    finally:
        p.stop()
        auth.close()


def produce_all(kafka_bootstrap: str, tenant: str) -> None:
    producer = Producer(producer_config(kafka_bootstrap, **{"linger.ms": 20}))
    topic = device_data(tenant)
    for i in range(PER_DEVICE):
        for d in range(DEVICES):
            device = f"dev{d:03d}"
            body = {"metadata": {"deviceid": device, "tenant": tenant, "timestamp": T0_MS + i}, "attrs": {"seq": i}}
            while True:
                try:
                    producer.produce(topic, json.dumps(body).encode(), key=device)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


@pytest.mark.timeout(1200)
def test_no_message_lost_or_duplicated_across_two_kills(persister, kafka_bootstrap, mongo_url, unique) -> None:
    ensure_topics(kafka_bootstrap, [device_data(unique)])
    produce_all(kafka_bootstrap, unique)
    with pymongo.MongoClient(mongo_url) as client:
        points = client[tenant_database_name(PREFIX, unique)]["points"]

        # Progress is read from the group's committed offset (committed only after the points are stored):
        # counting the collection would scan it on the embedded store and slow the very writes being waited for.
        group, topic = persister.env["PERSISTER_KAFKA_GROUP"], device_data(unique)
        persister.start()
        killed_at = []
        for threshold in (TOTAL // 4, TOTAL // 2):
            wait_for(
                lambda t=threshold: committed(kafka_bootstrap, group, topic) >= t,
                timeout=300,
                what=f"{threshold} messages stored",
                interval=0.2,
            )
            persister.kill()
            killed_at.append(points.count_documents({}))
            persister.start()
        assert all(n < TOTAL for n in killed_at), f"the persister finished before a kill: {killed_at}"

        wait_for(
            lambda: committed(kafka_bootstrap, group, topic) >= TOTAL, timeout=600, what="every message", interval=0.5
        )
        # Stored exactly once: as many points as messages, one per (device, seq).
        time.sleep(2)  # anything still being redelivered would show up as extra points (it never may)
        assert points.count_documents({}) == TOTAL
        pairs = {(d["device_id"], d["value"]) for d in points.find({}, {"device_id": 1, "value": 1, "_id": 0})}
        assert len(pairs) == TOTAL
        # Each device's points are in its own order: timestamps follow the sequence numbers.
        for d in (0, DEVICES // 2, DEVICES - 1):
            seqs = [doc["value"] for doc in points.find({"device_id": f"dev{d:03d}"}).sort("ts", 1)]
            assert seqs == list(range(PER_DEVICE))
    wait_for(lambda: persister.duplicates() >= 0, what="metrics")
    print(
        f"\nkilled at {killed_at} stored points; duplicates rewritten after the last restart: {persister.duplicates()}"
    )
