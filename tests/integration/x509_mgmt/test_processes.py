"""The real process (``python -m x509_mgmt api``, gunicorn with two workers) from an empty data directory: the
workers bootstrap one CA between them, issue concurrently, and publish an event for every certificate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509

from ondasctl.ports import free_port
from tests.integration.x509_mgmt.helpers import DeviceRoute, consume_until
from tests.unit.x509_mgmt import pki
from tests.waiting import http_ok, wait_for
from x509_mgmt.events import certificates_topic

pytestmark = pytest.mark.integration


def test_two_workers_share_one_ca(
    pg_database: Callable[[str], str],
    kafka_bootstrap: str,
    tokens: Any,
    tmp_path_factory: pytest.TempPathFactory,
    device_route: DeviceRoute,
) -> None:
    port = free_port()
    data = tmp_path_factory.mktemp("x509proc")
    env = {
        **os.environ,
        "X509_MGMT_DB_URL": pg_database("x509proc"),
        "X509_MGMT_HTTP_PORT": str(port),
        "X509_MGMT_HTTP_WORKERS": "2",
        "X509_MGMT_DATA_DIR": str(data / "ca"),
        "X509_MGMT_DEVICE_MANAGER_URL": device_route.url,
        "X509_MGMT_RELAY_POLL_SECONDS": "0.2",
        "ONDAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
        "ONDAS_BIND_HOST": "127.0.0.1",
        "ONDAS_LOG_LEVEL": "WARNING",
        "ONDAS_AUTHZ": "signature",  # test tokens, no auth
    }
    log_path = data / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "x509_mgmt", "api"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}/x509/v1"
    tenant = "p" + uuid.uuid4().hex[:10]
    headers = tokens.headers(tenant)
    devices = [f"{i:04x}" for i in range(12)]
    device_route.add(tenant, *devices)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health/ready"), timeout=30, what="x509_mgmt to be ready")

        def issue(device: str) -> dict[str, Any]:
            resp = requests.post(f"{base}/certificates", json={"csr": pki.csr_pem(device)}, headers=headers, timeout=30)
            assert resp.status_code == 201, resp.text
            return resp.json()  # type: ignore[no-any-return]

        with ThreadPoolExecutor(6) as pool:
            issued = list(pool.map(issue, devices))
        chains = {requests.get(f"{base}/ca", headers=headers, timeout=10).json()["caPem"] for _ in range(8)}
        assert len(chains) == 1
        issuing = x509.load_pem_x509_certificates(chains.pop().encode())[0]
        for body in issued:
            x509.load_pem_x509_certificate(body["certificatePem"].encode()).verify_directly_issued_by(issuing)
        assert sorted(p.name for p in (data / "ca").iterdir() if p.suffix == ".key") == ["issuing-ca.key"]

        messages = consume_until(kafka_bootstrap, certificates_topic(tenant), len(devices))
        assert sorted(m[0] for m in messages) == sorted(b["certificateFingerprint"] for b in issued)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0, Path(log_path).read_text()[-3000:]
