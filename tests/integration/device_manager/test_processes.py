"""The real processes: ``python -m device_manager api`` (gunicorn) and ``python -m device_manager relay``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from ondas import topics
from ondasctl.ports import free_port
from tests.integration.device_manager.helpers import consume, wait_for
from tests.waiting import http_ok

pytestmark = pytest.mark.integration


@pytest.fixture
def processes(
    pg_database: Callable[[str], str], kafka_bootstrap: str, tokens: Any, tmp_path: Any
) -> Iterator[dict[str, str]]:
    api_port, relay_port = free_port(), free_port()
    env = {
        **os.environ,
        "DEVICE_MANAGER_DB_URL": pg_database("dmproc"),
        "DEVICE_MANAGER_HTTP_PORT": str(api_port),
        "DEVICE_MANAGER_RELAY_HEALTH_PORT": str(relay_port),
        "DEVICE_MANAGER_RELAY_POLL_SECONDS": "0.2",
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_BIND_HOST": "127.0.0.1",
        "ONDAS_LOG_LEVEL": "INFO",
    }
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    for name in ("api", "relay"):
        log = (tmp_path / f"{name}.log").open("wb")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "device_manager", name], env=env, stdout=log, stderr=log))
    urls = {"api": f"http://127.0.0.1:{api_port}", "relay": f"http://127.0.0.1:{relay_port}"}
    try:
        for name, base in urls.items():
            wait_for(lambda base=base: http_ok(f"{base}/health/ready"), timeout=30, what=f"{name} to be ready")
        yield urls
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(20) for p in procs]
        for log in logs:
            log.close()
        assert codes == [0, 0], [(tmp_path / f"{n}.log").read_text()[-2000:] for n in ("api", "relay")]


def test_api_and_relay_processes(processes: dict[str, str], tokens: Any, unique: str, kafka_bootstrap: str) -> None:
    api = processes["api"]
    headers = tokens.headers(unique)
    with requests.Session() as http:
        template = http.post(
            f"{api}/template",
            json={"label": "t", "attrs": [{"label": "led", "type": "actuator", "value_type": "bool"}]},
            headers=headers,
            timeout=10,
        ).json()["template"]
        created = http.post(
            f"{api}/device", json={"label": "d", "templates": [template["id"]]}, headers=headers, timeout=10
        )
        assert created.status_code == 200
        device_id = created.json()["devices"][0]["id"]
        actuated = http.put(
            f"{api}/device/{device_id}/actuate", json={"attrs": {"led": True}}, headers=headers, timeout=10
        )
        assert actuated.status_code == 200
        internal = http.get(f"{api}/internal/tenants/{unique}/devices", timeout=10).json()
        assert [d["id"] for d in internal["devices"]] == [device_id]
        status = http.get(f"{processes['relay']}/status", timeout=10).json()
        assert status["state"] == "active"

    events = consume(kafka_bootstrap, topics.device_events(unique), 2)
    assert [(k, v["event"]) for k, v in events] == [(device_id, "create"), (device_id, "configure")]
    assert events[1][1]["data"]["attrs"] == {"led": True}
