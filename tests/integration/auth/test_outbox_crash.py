"""Crash safety of auth's tenancy events: auth (``python -m auth``, a real process) dies right after a new tenant
was committed and before its CREATE event was published; started again, it publishes the event, as it would have,
on the real broker's tenancy topic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from ondas.kafka import consumer_config
from ondas.topics import TENANCY_TOPIC, device_data, device_events, device_liveness
from ondasctl.ports import free_port
from tests.integration.auth.helpers import ADMIN_PASSWORD, MASTER_SECRET, TenancyEvents
from tests.waiting import http_ok, wait_for

pytestmark = pytest.mark.integration


class Auth:
    """``python -m auth`` as a process a test can start, let die and start again."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.base = f"http://127.0.0.1:{env['AUTH_HTTP_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, run: str, **extra: str) -> None:
        with (self.logs / f"auth-{run}.log").open("wb") as log:
            # A session of its own, as a container: its gunicorn master and workers go together.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "auth"],
                env={**self.env, **extra},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_for(lambda: self._ready(), timeout=60, what=f"auth ({run}) to be ready")

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "auth exited during start-up"
        return http_ok(f"{self.base}/health/ready")

    def admin_token(self) -> str:
        r = requests.post(f"{self.base}/", json={"username": "admin", "passwd": ADMIN_PASSWORD}, timeout=10)
        r.raise_for_status()
        return str(r.json()["jwt"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def auth_process(
    pg_database: Callable[[str], str], redis_url: str, kafka_bootstrap: str, tokens: Any, tmp_path: Path
) -> Iterator[Auth]:
    env = {
        **os.environ,
        "AUTH_HTTP_PORT": str(free_port()),
        "AUTH_DB_URL": pg_database("authcrash"),
        "AUTH_REDIS_URL": redis_url,
        "AUTH_CACHE_PREFIX": f"crash:{uuid.uuid4().hex[:8]}:",
        "AUTH_JWT_PRIVATE_KEY_FILE": str(tokens.private_file),
        "AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "AUTH_SERVICE_MASTER_SECRET": MASTER_SECRET,
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_BIND_HOST": "127.0.0.1",
        "ONDAS_LOG_LEVEL": "INFO",
    }
    for name in ("AUTH_TEST_EXIT_AFTER_TENANT_COMMIT", "AUTH_OUTBOX_POLL_SECONDS", "AUTH_HTTP_WORKERS"):
        env.pop(name, None)
    auth = Auth(env, tmp_path)
    try:
        yield auth
    finally:
        auth.stop()


@pytest.fixture
def events(kafka_bootstrap: str) -> Iterator[TenancyEvents]:
    e = TenancyEvents(kafka_bootstrap)
    yield e
    e.close()


def tenancy_events_of(bootstrap: str, tenant: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every message of the tenancy topic about ``tenant`` (key, value), read from its start to its end."""
    c = Consumer(consumer_config(bootstrap, "outbox-crash-" + uuid.uuid4().hex[:8]))
    try:
        _, high = c.get_watermark_offsets(TopicPartition(TENANCY_TOPIC, 0), timeout=10)
        c.assign([TopicPartition(TENANCY_TOPIC, 0, 0)])
        out: list[tuple[bytes | None, bytes | None]] = []
        read = 0

        def step() -> bool:
            nonlocal read
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                read = (msg.offset() or 0) + 1
                if json.loads(msg.value() or b"{}").get("tenant") == tenant:
                    out.append((msg.key(), msg.value()))
            return read >= high

        wait_for(step, timeout=30, what="the tenancy topic to be read to its end", interval=0)
        return out
    finally:
        c.close()


def outbox_rows(db_url: str, tenant: str) -> list[tuple[str, bool]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT kind, sent IS NOT NULL FROM tenancy_outbox WHERE tenant = %s ORDER BY seq", (tenant,)
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_a_crash_between_the_tenant_commit_and_its_event_still_publishes_the_event(
    auth_process: Auth, events: TenancyEvents, kafka_bootstrap: str
) -> None:
    tenant = "t" + uuid.uuid4().hex[:10]
    # One worker, and its relay thread waiting for an hour: only the request itself would publish the event.
    auth_process.start(
        "crashing", AUTH_TEST_EXIT_AFTER_TENANT_COMMIT=tenant, AUTH_HTTP_WORKERS="1", AUTH_OUTBOX_POLL_SECONDS="3600"
    )
    token = auth_process.admin_token()
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{auth_process.base}/tenants",
            json={"tenant": tenant},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    assert auth_process.proc is not None
    assert auth_process.proc.wait(30) != 0  # the whole service died
    db_url = auth_process.env["AUTH_DB_URL"]
    # The tenant was committed, its event was not published.
    assert outbox_rows(db_url, tenant) == [("CREATE", False)]

    auth_process.start("restarted")
    assert events.wait_for({"type": "CREATE", "tenant": tenant}) == tenant
    # Exactly as a CREATE is published without a crash: once, keyed by the tenant, dojot's JSON.
    published = tenancy_events_of(kafka_bootstrap, tenant)
    assert [(k, json.loads(v or b"")) for k, v in published] == [
        (tenant.encode(), {"type": "CREATE", "tenant": tenant})
    ]
    assert outbox_rows(db_url, tenant) == [("CREATE", True)]
    # Its topics were made before the event went out.
    names = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert {device_data(tenant), device_events(tenant), device_liveness(tenant)} <= set(names)
    r = requests.get(f"{auth_process.base}/tenants", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert tenant in r.json()["tenants"]
    log_text = (auth_process.logs / "auth-restarted.log").read_text(errors="replace")
    assert "Traceback" not in log_text, log_text[-3000:]
