"""Flow engine benchmark: messages per second through a three-node flow, next to a raw consume+produce loop doing
the same transformation on the same topics in the same run. Run on demand, never by the test suite:

    .venv/bin/python -m bench.flows [--messages 20000] [--devices 10] [--workers 1]

It starts its own Kafka-protocol broker, PostgreSQL and Redis the way the tests do (free ports, a throw-away
folder), stores one flow per source device through the flowbroker's own API app (dojot's JSON: ``event device
in`` -> ``change`` (``output.temp`` = ``payload.data.attrs.temperature``) -> ``multi device out`` to a virtual
device), produces ``--messages`` device-data messages spread over ``--devices`` source devices, then:

- **flowbroker**: starts ``--workers`` real worker processes (``python -m flowbroker worker``, one consumer
  group) and reads ``<tenant>.device-data`` until every virtual device's output is there. The rate is outputs per
  second from the first output to the last (the group join before the first is not counted).
- **raw loop (ceiling)**: one confluent-kafka consumer in this process reads the same input messages from the
  start of the topic, parses each, builds the same output (``{"attrs": {"temp": ...}, "metadata": ...}``) and
  produces it to the same topic with the same producer settings, committing after each batch's outputs were
  accepted, as the worker does; measured the same way. No flow store, no context, no per-flow threads: what the
  broker and the client library allow for this work on this machine.

The table shows both rates and their ratio. Both share the machine's cores with the broker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer

from bench.common import print_table, wait_until
from flowbroker.app import build_api, close_api
from ondas.kafka import consumer_config, ensure_topics, producer_config
from ondas.topics import device_data, device_events
from ondasctl.infra import create_databases
from ondasctl.ports import free_port
from tests.auth_stub import AuthStub
from tests.integration.flowbroker.conftest import make_settings
from tests.servers import Servers
from tests.tokens import TokenMaker
from tests.unit.flowbroker import flows

T0_MS = 1_700_000_000_000
PARTITIONS = 4


def produce_inputs(bootstrap: str, tenant: str, count: int, devices: int) -> None:
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 20}))
    for i in range(count):
        device = f"src{i % devices}"
        body = {"metadata": {"deviceid": device, "tenant": tenant, "timestamp": T0_MS + i}, "attrs": {"temperature": i}}
        while True:
            try:
                producer.produce(device_data(tenant), json.dumps(body).encode(), key=device)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0


class OutputCounter:
    """Reads ``topic`` from its start and notes when each output (a record of a device named ``out*``) arrived."""

    def __init__(self, bootstrap: str, topic: str, prefix: str) -> None:
        self._consumer = Consumer(consumer_config(bootstrap, f"bench-out-{uuid.uuid4().hex[:8]}"))
        self._consumer.subscribe([topic])
        self._prefix = prefix
        self.first = self.last = 0.0
        self.count = 0

    def poll(self) -> int:
        for msg in self._consumer.consume(1000, timeout=0.2):
            if msg.error() is not None or msg.value() is None:
                continue
            if not json.loads(msg.value())["metadata"]["deviceid"].startswith(self._prefix):
                continue
            now = time.monotonic()
            self.first = self.first or now
            self.last = now
            self.count += 1
        return self.count

    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.count > 1 and self.last > self.first else 0.0

    def close(self) -> None:
        self._consumer.close()


def run_workers(env: dict[str, str], count: int, work: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        with (work / f"worker{i}.log").open("ab") as log:
            worker_env = {**env, "FLOWBROKER_WORKER_HEALTH_PORT": str(free_port())}
            procs.append(
                subprocess.Popen([sys.executable, "-m", "flowbroker", "worker"], env=worker_env, stdout=log, stderr=log)
            )
    return procs


def raw_loop(bootstrap: str, tenant: str, count: int, batch: int) -> None:
    """The ceiling: consume the inputs, transform, produce, commit after the outputs were accepted."""
    consumer = Consumer(consumer_config(bootstrap, f"bench-raw-{uuid.uuid4().hex[:8]}"))
    producer = Producer(producer_config(bootstrap))
    consumer.subscribe([device_data(tenant)])
    done = 0
    try:
        while done < count:
            msgs = [m for m in consumer.consume(batch, timeout=0.05) if m.error() is None]
            for msg in msgs:
                data = json.loads(msg.value() or b"{}")
                source = data["metadata"]["deviceid"]
                if not source.startswith("src"):
                    continue
                out = {
                    "attrs": {"temp": data["attrs"]["temperature"]},
                    "metadata": {
                        "deviceid": "raw" + source[3:],
                        "tenant": tenant,
                        "timestamp": int(time.time() * 1000),
                    },
                }
                producer.produce(device_data(tenant), json.dumps(out).encode(), key=out["metadata"]["deviceid"])
                done += 1
            if msgs:
                assert producer.flush(30) == 0
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="device-data messages into the flows")
    parser.add_argument("--devices", type=int, default=10, help="source devices (one flow each)")
    parser.add_argument("--workers", type=int, default=1, help="flowbroker worker processes")
    args = parser.parse_args(argv)

    servers = Servers()
    work = Path(tempfile.mkdtemp(prefix="ondas-bench-flows-"))
    tenant = "bench" + uuid.uuid4().hex[:6]
    auth = AuthStub([tenant])
    workers: list[subprocess.Popen[bytes]] = []
    try:
        bootstrap = servers.ensure("kafka").kafka_bootstrap
        redis_url = servers.ensure("redis").redis_url
        pg = servers.ensure("postgres")
        db = "flowbench_" + uuid.uuid4().hex[:6]
        create_databases(pg, [db])
        tokens = TokenMaker(work)
        settings = make_settings(pg.postgres_url(db), bootstrap, redis_url, str(tokens.public_file), auth.url)
        ensure_topics(bootstrap, [device_data(tenant), device_events(tenant)], partitions=PARTITIONS)

        app = build_api(settings)  # settings with authz "signature": it checks the bench's own tokens' signature
        with app.test_client() as client:
            for d in range(args.devices):
                body = {"name": f"f{d}", "enabled": True, "flow": flows.rename_flow(f"src{d}", f"out{d}")}
                r = client.post("/flows/v1/flow", json=body, headers=tokens.headers(tenant))
                assert r.status_code == 200, r.get_json()
        close_api(app)

        print(f"==> {args.messages:,} messages from {args.devices} devices", flush=True)
        produce_inputs(bootstrap, tenant, args.messages, args.devices)

        print(f"==> flowbroker: {args.workers} worker process(es)", flush=True)
        env = {
            **os.environ,
            "ONDAS_KAFKA_BOOTSTRAP": bootstrap,
            "ONDAS_AUTH_URL": auth.url,
            "ONDAS_LOG_LEVEL": "WARNING",
            "FLOWBROKER_DB_URL": settings.db_url,
            "FLOWBROKER_REDIS_URL": redis_url,
            "FLOWBROKER_KAFKA_GROUP": "flowbroker-bench",
        }
        flow_out = OutputCounter(bootstrap, device_data(tenant), "out")
        workers = run_workers(env, args.workers, work)
        wait_until(lambda: flow_out.poll() >= args.messages, 900, "every flow output")
        flow_rate = flow_out.rate()
        flow_out.close()
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()

        print("==> raw consume+produce loop", flush=True)
        raw_out = OutputCounter(bootstrap, device_data(tenant), "raw")
        raw_loop(bootstrap, tenant, args.messages, settings.batch_size)
        wait_until(lambda: raw_out.poll() >= args.messages, 300, "every raw output")
        raw_rate = raw_out.rate()
        raw_out.close()
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
        auth.close()
        servers.stop()

    rows = [
        [
            "event in -> change -> device out",
            f"{flow_rate:,.0f} msg/s ({args.workers} worker{'s' if args.workers > 1 else ''})",
            f"{raw_rate:,.0f} msg/s",
            f"{flow_rate / raw_rate:.0%}" if raw_rate else "-",
        ]
    ]
    print()
    print_table(["flow", "flowbroker", "raw consume+produce loop", "flowbroker / raw"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
