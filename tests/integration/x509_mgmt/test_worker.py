"""The worker (``python -m x509_mgmt worker``) on the real broker: a removed device's certificates are revoked
(and on the CRL), a deleted tenant's certificates are revoked and purged."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography import x509
from flask import Flask
from flask.testing import FlaskClient

from ondas import kafka
from ondas.contracts import DeviceEvent
from ondas.topics import TENANCY_TOPIC, device_events
from tests.auth_stub import AuthStub
from tests.integration.x509_mgmt.helpers import DeviceRoute
from tests.unit.x509_mgmt import pki
from tests.waiting import wait_for
from x509_mgmt.app import build_service
from x509_mgmt.consumers import Worker
from x509_mgmt.settings import Settings
from x509_mgmt.store_postgres import PostgresStore

BASE = "/x509/v1"


@pytest.fixture
def tenant() -> str:
    return "w" + uuid.uuid4().hex[:10]


@pytest.fixture
def worker(settings: Settings, app: Flask, tenant: str) -> Iterator[tuple[Worker, AuthStub]]:
    stub = AuthStub([tenant])
    store = PostgresStore(settings.db_url, max_connections=2)
    w = Worker(
        build_service(settings, store), settings.common.kafka_bootstrap, stub.url, group_id=f"test-{uuid.uuid4().hex}"
    ).start()
    try:
        wait_for(lambda: w.tracker.ready and w.loop.ready.is_set(), what="the worker to subscribe")
        yield w, stub
    finally:
        w.stop()
        store.close()
        stub.close()


def _revoked(client: FlaskClient, headers: dict[str, str], serial: int) -> bool:
    crl = x509.load_pem_x509_crl(client.get(f"{BASE}/ca/crl", headers=headers).get_json()["crl"].encode())
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


def _issue(client: FlaskClient, headers: dict[str, str], cn: str) -> tuple[str, int]:
    body = client.post(f"{BASE}/certificates", json={"csr": pki.csr_pem(cn)}, headers=headers).get_json()
    return body["certificateFingerprint"], x509.load_pem_x509_certificate(body["certificatePem"].encode()).serial_number


def test_a_removed_device_loses_its_certificates(
    client: FlaskClient,
    tokens: Any,
    tenant: str,
    device_route: DeviceRoute,
    worker: tuple[Worker, AuthStub],
    settings: Settings,
) -> None:
    headers = tokens.headers(tenant)
    device_route.add(tenant, "1a1a", "2b2b")
    fp, serial = _issue(client, headers, "1a1a")
    kept, _ = _issue(client, headers, "2b2b")
    root, root_key = pki.ca_cert("Factory")
    client.post(f"{BASE}/trusted-cas", json={"caPem": pki.pem(root)}, headers=headers)
    leaf, _ = pki.leaf_cert("factory-1", root, root_key)
    ext = client.post(
        f"{BASE}/certificates",
        json={"certificateChain": pki.pem(leaf), "belongsTo": {"device": "1a1a"}},
        headers=headers,
    ).get_json()["certificateFingerprint"]

    producer = kafka.Producer(settings.common.kafka_bootstrap)
    try:
        producer.send_and_wait(device_events(tenant), DeviceEvent.removed(tenant, "1a1a").to_bytes(), "1a1a")
    finally:
        producer.close()

    wait_for(lambda: client.get(f"{BASE}/certificates/{fp}", headers=headers).status_code == 404, what="revocation")
    assert _revoked(client, headers, serial)
    assert client.get(f"{BASE}/certificates/{kept}", headers=headers).status_code == 200
    assert client.get(f"{BASE}/certificates/{ext}", headers=headers).get_json()["belongsTo"] == {}


def test_a_deleted_tenant_is_revoked_and_purged(
    client: FlaskClient,
    tokens: Any,
    tenant: str,
    device_route: DeviceRoute,
    worker: tuple[Worker, AuthStub],
    settings: Settings,
) -> None:
    headers = tokens.headers(tenant)
    device_route.add(tenant, "3c3c")
    fp, serial = _issue(client, headers, "3c3c")
    _, stub = worker
    stub.tenants = []
    producer = kafka.Producer(settings.common.kafka_bootstrap)
    try:
        body = json.dumps({"type": "DELETE", "tenant": tenant}).encode()
        producer.send_and_wait(TENANCY_TOPIC, body, tenant)
    finally:
        producer.close()

    def purged() -> bool:
        with psycopg.connect(settings.db_url) as conn:
            row = conn.execute("SELECT count(*) FROM certificates WHERE tenant = %s", (tenant,)).fetchone()
        return row is not None and row[0] == 0

    wait_for(purged, what="the tenant's certificates to be purged")
    wait_for(lambda: _revoked(client, headers, serial), what="the purged certificate on the CRL")
    assert client.get(f"{BASE}/certificates/{fp}", headers=headers).status_code == 404
