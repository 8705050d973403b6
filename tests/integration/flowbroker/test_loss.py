"""Loss test: 50,000 device messages through change -> device out flows while one of two worker processes is
killed with SIGKILL and started again. Offsets are committed only after the outputs were accepted, so every output
is there (a redelivered batch may repeat some: counted, never missing), each device's outputs in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from flowbroker.settings import Settings
from ondas.kafka import consumer_config, ensure_topics, producer_config
from ondas.topics import device_data, device_events
from ondasctl.ports import free_port
from tests.integration.flowbroker.conftest import Api, Reader
from tests.unit.flowbroker import flows
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DEVICES = 20
PER_DEVICE = 2500
TOTAL = DEVICES * PER_DEVICE
PARTITIONS = 4


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env, self.log_file = env, log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowbroker", "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
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


@pytest.fixture
def workers(settings: Settings, unique: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    group = f"flowbroker-loss-{unique}"
    procs = []
    for i in range(2):
        env = {
            **os.environ,
            "ONDAS_KAFKA_BOOTSTRAP": settings.common.kafka_bootstrap,
            "ONDAS_AUTH_URL": settings.common.auth_url,
            "ONDAS_LOG_LEVEL": "WARNING",
            "FLOWBROKER_DB_URL": settings.db_url,
            "FLOWBROKER_REDIS_URL": settings.redis_url,
            "FLOWBROKER_KAFKA_GROUP": group,
            "FLOWBROKER_WORKER_HEALTH_PORT": str(free_port()),
            "FLOWBROKER_FLOWS_REFRESH_SECONDS": "0.5",
        }
        procs.append(WorkerProcess(env, tmp_path / f"worker{i}.log"))
    yield procs
    for p in procs:
        p.stop()


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = Consumer(consumer_config(bootstrap, group))
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)
    finally:
        c.close()


def produce_all(bootstrap: str, tenant: str) -> None:
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 20}))
    for i in range(PER_DEVICE):
        for d in range(DEVICES):
            body = {
                "metadata": {"deviceid": f"src{d}", "tenant": tenant, "timestamp": 1_700_000_000_000 + i},
                "attrs": {"temperature": i},
            }
            while True:
                try:
                    producer.produce(device_data(tenant), json.dumps(body).encode(), key=f"src{d}")
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


@pytest.mark.timeout(900)
def test_no_output_lost_when_a_worker_is_killed(
    api: Api,
    unique: str,
    kafka_bootstrap: str,
    workers: list[WorkerProcess],
    reader: Callable[[str], Reader],
) -> None:
    ensure_topics(kafka_bootstrap, [device_data(unique), device_events(unique)], partitions=PARTITIONS)
    for d in range(DEVICES):
        api.create(flows.rename_flow(f"src{d}", f"out{d}"), name=f"f{d}")
    produce_all(kafka_bootstrap, unique)
    group = workers[0].env["FLOWBROKER_KAFKA_GROUP"]
    for w in workers:
        w.start()
    wait_for(
        lambda: committed(kafka_bootstrap, group, device_data(unique)) >= TOTAL // 3,
        timeout=300,
        what="a third of the messages",
        interval=0.3,
    )
    workers[0].kill()
    at_kill = committed(kafka_bootstrap, group, device_data(unique))
    assert at_kill < TOTAL, "the workers finished before the kill"
    workers[0].start()
    out = reader(device_data(unique))

    def outputs() -> list[dict[str, Any]]:
        return out.until(TOTAL, lambda v: str(v.get("metadata", {}).get("deviceid", "")).startswith("out"), 5)

    wait_for(
        lambda: len({(v["metadata"]["deviceid"], v["attrs"]["temp"]) for v in outputs()}) >= TOTAL,
        timeout=600,
        what="every output",
        interval=0.5,
    )
    found = outputs()
    counts = Counter((v["metadata"]["deviceid"], v["attrs"]["temp"]) for v in found)
    assert set(counts) == {(f"out{d}", i) for d in range(DEVICES) for i in range(PER_DEVICE)}
    for d in (0, DEVICES - 1):
        temps = [v["attrs"]["temp"] for v in found if v["metadata"]["deviceid"] == f"out{d}"]
        firsts = [temps.index(i) for i in range(PER_DEVICE)]
        assert firsts == sorted(firsts)
    print(f"\nkilled at {at_kill} committed; outputs {len(found)} for {TOTAL} messages, {len(found) - TOTAL} repeated")
