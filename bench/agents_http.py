"""HTTP agent benchmark: requests per second of ``POST /http-agent/v1/incoming-messages`` next to a bare gunicorn
endpoint measured in the same run with the same clients. Run on demand, never by the test suite:

    .venv/bin/python -m bench.agents_http [--threads 16] [--duration 15] [--warmup 3]

It starts its own Kafka-protocol broker and Redis the way the tests do (free ports, a throw-away folder), a stub
of the auth/device-manager routes the agent reads, and the real agent (``python -m agents.http``: gunicorn, one
gthread worker, ``--threads`` threads). Each of ``--threads`` client threads (one keep-alive ``requests``
session each) is one device sending ``{"data": {...}}`` with its Basic credentials, back to back; every answer
must be 204, which the agent sends only after Kafka accepted the message. Afterwards the records on
``<tenant>.device-data`` are counted: at least one per 204.

Ceiling: the same clients against a bare WSGI callable (reads the body, answers 204) served by gunicorn with the
same worker model (one gthread worker, the same thread count): what gunicorn and the clients manage on this
machine without the agent's work (Basic credentials, the device cache, validation, Kafka). The table prints
requests/s and p50/p99 latency of both, and their ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, TopicPartition

from agents.core.credentials_redis import RedisCredentialStore as CredentialStore
from bench.common import Request, Result, load, print_table, wait_until
from ondas.kafka import consumer_config, ensure_topics
from ondas.topics import device_data, device_events
from ondasctl.ports import free_port
from tests.integration.agents_http.conftest import basic, launch_http_agent
from tests.integration.agents_mqtt.conftest import Stub, device
from tests.servers import DEVICE_CREDENTIALS_KEY, Servers

ROOT = Path(__file__).resolve().parents[1]
PATH = "/http-agent/v1/incoming-messages"


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The ceiling's endpoint: reads the request body and answers 204, nothing else."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("204 No Content", [])
    return [b""]


def start_bare(threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread"]
    args += ["--threads", str(threads), "--keep-alive", "30", "--bind", f"127.0.0.1:{port}"]
    args += ["--no-control-socket", "bench.agents_http:bare_app"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            return requests.post(base + PATH, json={}, timeout=2).status_code == 204
        except requests.ConnectionError:
            return False

    wait_until(up, 30, "the bare gunicorn endpoint")
    return proc, base


def records_on(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (sum of its partitions' end offsets)."""
    consumer = Consumer(consumer_config(bootstrap, "bench-count-" + uuid.uuid4().hex))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=16, help="client threads (one device each) and server threads")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    args = ap.parse_args()

    tenant = "bench" + uuid.uuid4().hex[:6]
    ids = [f"dev{i:03d}" for i in range(args.threads)]
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    servers = Servers()
    stub = Stub()
    agent = None
    bare: subprocess.Popen[bytes] | None = None
    try:
        bootstrap = servers.ensure("kafka").kafka_bootstrap
        redis_url = servers.ensure("redis").redis_url
        ensure_topics(bootstrap, [device_data(tenant), device_events(tenant)])
        stub.tenants = [tenant]
        stub.devices[tenant] = [device(d) for d in ids]
        store = CredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY)
        passwords = {d: uuid.uuid4().hex for d in ids}
        for d, pw in passwords.items():
            store.set_password(tenant, d, pw)
        store.close()

        print(f"ceiling: bare gunicorn endpoint, {args.threads} threads, {args.duration:g} s ...", flush=True)
        bare, bare_base = start_bare(args.threads, work / "bare.log")
        ceiling = load(
            Request("POST", bare_base + PATH, body={"data": {"temperature": 20.5}}, expect=204),
            args.threads,
            args.duration,
            args.warmup,
        )
        bare.terminate()
        bare.wait(30)
        bare = None

        agent = launch_http_agent(
            bootstrap, redis_url, stub, work / "agent.log", {"HTTP_AGENT_THREADS": str(args.threads)}
        )
        print(f"the HTTP agent (log: {work / 'agent.log'}), {args.threads} devices, {args.duration:g} s ...")
        reqs = [
            Request(
                "POST",
                agent.base + PATH,
                {"Authorization": basic(tenant, d, passwords[d])},
                {"data": {"temperature": 20.5}},
                expect=204,
            )
            for d in ids
        ]
        through = load(reqs, args.threads, args.duration, args.warmup)
        accepted = len(through.latencies_ms)
        stored = records_on(bootstrap, device_data(tenant))
        if stored < accepted:
            raise RuntimeError(f"{accepted} messages answered 204 but only {stored} records on Kafka")
    finally:
        if bare is not None:
            bare.terminate()
        if agent is not None:
            agent.stop()
        stub.close()
        servers.stop()

    rows = [_row("requests/s", through, ceiling, lambda r: r.rate, "{:,.0f}")]
    rows.append(_row("p50 latency, ms", through, ceiling, lambda r: r.p50, "{:.1f}"))
    rows.append(_row("p99 latency, ms", through, ceiling, lambda r: r.p99, "{:.1f}"))
    print()
    print(f"{stored:,} records on {device_data(tenant)} for the agent's {accepted:,} timed 204s (plus warm-up)")
    print_table(("measure", "HTTP agent", "bare gunicorn (same run)", "ratio"), rows)


def _row(name: str, a: Result, b: Result, get: Callable[[Result], float], fmt: str) -> tuple[str, str, str, str]:
    return name, fmt.format(get(a)), fmt.format(get(b)), f"{get(a) / get(b):.2f}"


if __name__ == "__main__":
    main()
