"""x509_mgmt asking a real device manager (its app on a real HTTP server and its own database) whether a device
exists: a device of the tenant gets a certificate, an unknown one or another tenant's does not."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from device_manager.app import build_api as build_device_manager
from device_manager.app import close_api as close_device_manager
from device_manager.settings import Settings as DeviceManagerSettings
from ondas.settings import CommonSettings
from tests.unit.x509_mgmt import pki
from x509_mgmt.app import build_api, close_api
from x509_mgmt.settings import Settings

BASE = "/x509/v1"


@pytest.fixture
def device_manager(pg_database: Callable[[str], str], kafka_bootstrap: str, tokens: Any) -> Iterator[str]:
    settings = DeviceManagerSettings(
        common=CommonSettings(
            kafka_bootstrap=kafka_bootstrap,
            auth_url="http://127.0.0.1:1",
            jwt_public_key_file=str(tokens.public_file),
            log_level="INFO",
            bind_host="127.0.0.1",
            authz="signature",
        ),
        db_url=pg_database("x509dm"),
        http_port=0,
        http_workers=1,
        relay_health_port=0,
        relay_poll_seconds=0.2,
        db_max_connections=2,
    )
    app = build_device_manager(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        close_device_manager(app)


def test_certificates_only_for_the_tenants_own_devices(settings: Settings, device_manager: str, tokens: Any) -> None:
    import requests

    a, b = "da" + uuid.uuid4().hex[:8], "db" + uuid.uuid4().hex[:8]
    headers = tokens.headers(a)
    template = requests.post(
        f"{device_manager}/template",
        json={"label": "t", "attrs": [{"label": "temperature", "type": "dynamic", "value_type": "float"}]},
        headers=headers,
        timeout=10,
    )
    template.raise_for_status()
    tid = template.json()["template"]["id"]
    created = requests.post(
        f"{device_manager}/device", json={"label": "thermometer", "templates": [tid]}, headers=headers, timeout=10
    )
    created.raise_for_status()
    device_id = created.json()["devices"][0]["id"]
    app = build_api(dataclasses.replace(settings, device_manager_url=device_manager))
    try:
        with app.test_client() as client:
            ok = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem(device_id)}, headers=tokens.headers(a))
            assert ok.status_code == 201, ok.get_json()
            other = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem(device_id)}, headers=tokens.headers(b))
            assert other.status_code == 400
            assert f"no device {device_id} in tenant {b}" in other.get_json()["message"]
            unknown = "ffffff" if device_id != "ffffff" else "eeeeee"
            missing = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem(unknown)}, headers=tokens.headers(a))
            assert missing.status_code == 400
    finally:
        close_api(app)
