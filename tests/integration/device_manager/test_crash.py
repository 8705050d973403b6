"""Crash safety of the outbox: the processes are killed (SIGKILL) after a change committed and before its event
was published; after a restart the event is published, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ondas import topics
from ondasctl.ports import free_port
from tests.integration.device_manager.helpers import consume_until, outbox_count, wait_for
from tests.waiting import http_ok

pytestmark = pytest.mark.integration


class Service:
    """``python -m device_manager api`` and ``relay`` as real processes that a test can kill and restart."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.api = f"http://127.0.0.1:{env['DEVICE_MANAGER_HTTP_PORT']}"
        self.relay = f"http://127.0.0.1:{env['DEVICE_MANAGER_RELAY_HEALTH_PORT']}"

    def start(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            # A session of its own: killing it kills gunicorn's workers too, as a container's death would.
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "device_manager", name],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        base = self.api if name == "api" else self.relay
        wait_for(lambda: http_ok(f"{base}/health/ready"), timeout=30, what=f"{name} to be ready")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(20) == -signal.SIGKILL

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def service(pg_database: Callable[[str], str], kafka_bootstrap: str, tokens: Any, tmp_path: Path) -> Iterator[Service]:
    env = {
        **os.environ,
        "DEVICE_MANAGER_DB_URL": pg_database("dmcrash"),
        "DEVICE_MANAGER_HTTP_PORT": str(free_port()),
        "DEVICE_MANAGER_RELAY_HEALTH_PORT": str(free_port()),
        "DEVICE_MANAGER_RELAY_POLL_SECONDS": "0.2",
        "DEVICE_MANAGER_HTTP_WORKERS": "1",
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_BIND_HOST": "127.0.0.1",
        "ONDAS_LOG_LEVEL": "INFO",
    }
    svc = Service(env, tmp_path)
    try:
        yield svc
    finally:
        svc.stop_all()


def test_event_committed_before_a_crash_is_published_exactly_once_after_restart(
    service: Service, tokens: Any, unique: str, kafka_bootstrap: str
) -> None:
    topic = topics.device_events(unique)
    headers = tokens.headers(unique)
    service.start("api")
    service.start("relay")
    template = requests.post(
        f"{service.api}/template",
        json={"label": "t", "attrs": [{"label": "fan", "type": "actuator", "value_type": "integer"}]},
        headers=headers,
        timeout=10,
    ).json()["template"]
    created = requests.post(
        f"{service.api}/device", json={"label": "d", "templates": [template["id"]]}, headers=headers, timeout=10
    )
    device_id = created.json()["devices"][0]["id"]
    consume_until(kafka_bootstrap, topic, lambda e: e["event"] == "create")

    # The relay dies; the API commits a change (and its outbox row); then the API dies too.
    service.kill("relay")
    resp = requests.put(
        f"{service.api}/device/{device_id}/actuate", json={"attrs": {"fan": 42}}, headers=headers, timeout=10
    )
    assert resp.status_code == 200
    assert outbox_count(service.env["DEVICE_MANAGER_DB_URL"]) == 1  # committed, not yet published
    service.kill("api")

    service.start("api")
    service.start("relay")
    assert requests.delete(f"{service.api}/device/{device_id}", headers=headers, timeout=10).status_code == 200

    events = consume_until(kafka_bootstrap, topic, lambda e: e["event"] == "remove")
    assert [(k, e["event"]) for k, e in events] == [
        (device_id, "create"),
        (device_id, "configure"),
        (device_id, "remove"),
    ]
    assert events[1][1]["data"] == {"id": device_id, "attrs": {"fan": 42}}
    wait_for(lambda: outbox_count(service.env["DEVICE_MANAGER_DB_URL"]) == 0, what="the outbox to be emptied")


def test_a_killed_relay_is_replaced_by_its_standby(
    service: Service, tokens: Any, unique: str, kafka_bootstrap: str
) -> None:
    """Two relays: the active one is killed with events pending; the standby publishes them, each once."""
    topic = topics.device_events(unique)
    headers = tokens.headers(unique)
    service.start("api")
    service.start("relay")
    first = service.procs["relay"]
    standby_env = {**service.env, "DEVICE_MANAGER_RELAY_HEALTH_PORT": str(free_port())}
    with (service.logs / "standby.log").open("ab") as log:
        standby = subprocess.Popen(
            [sys.executable, "-m", "device_manager", "relay"], env=standby_env, stdout=log, stderr=log
        )
    try:
        status_url = f"http://127.0.0.1:{standby_env['DEVICE_MANAGER_RELAY_HEALTH_PORT']}/status"
        wait_for(lambda: _status(status_url) == "standby", timeout=30, what="the second relay to stand by")
        first.send_signal(signal.SIGSTOP)  # frozen: holds its lock, publishes nothing
        created = requests.post(
            f"{service.api}/device?count=5", json={"label": "d", "templates": []}, headers=headers, timeout=10
        ).json()["devices"]
        assert outbox_count(service.env["DEVICE_MANAGER_DB_URL"]) == 5
        service.kill("relay")  # SIGKILL works on a stopped process; its session and lock go away
        wait_for(lambda: _status(status_url) == "active", timeout=30, what="the standby to take over")
        last = created[-1]["id"]
        events = consume_until(kafka_bootstrap, topic, lambda e: e["data"]["id"] == last)
        assert [k for k, _ in events] == [d["id"] for d in created]
        assert {e["event"] for _, e in events} == {"create"}
    finally:
        standby.send_signal(signal.SIGTERM)
        standby.wait(20)


def _status(url: str) -> str | None:
    try:
        return str(requests.get(url, timeout=1).json()["state"])
    except (requests.RequestException, ValueError, KeyError):
        return None
