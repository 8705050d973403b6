"""The one place that wires the certificate authority together: CA, store, device lookups, service, HTTP app and
the outbox relay."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from flask import Flask

from ondas import kafka
from ondas.authn import TokenCheck, load_public_key
from ondas.health import Health
from ondas.web import create_app
from x509_mgmt import api
from x509_mgmt.ca import CertificateAuthority
from x509_mgmt.consumers import Worker
from x509_mgmt.events import OutboxRelay
from x509_mgmt.service import AnyDevice, DeviceDirectory, DeviceManagerDirectory, Policy, X509Service
from x509_mgmt.settings import Settings
from x509_mgmt.store_postgres import PostgresStore

SERVICE = "x509-mgmt"

log = logging.getLogger("x509_mgmt.app")


def open_ca(settings: Settings) -> CertificateAuthority:
    """The CA, bootstrapped on first use (root and issuing CA; see x509_mgmt/ca.py)."""
    return CertificateAuthority.open(Path(settings.data_dir), Path(settings.root_key_dir), settings.key_passphrase)


def build_service(settings: Settings, store: PostgresStore, devices: DeviceDirectory | None = None) -> X509Service:
    if devices is None:
        devices = (
            DeviceManagerDirectory(settings.device_manager_url, settings.device_manager_timeout_seconds)
            if settings.check_device
            else AnyDevice()
        )
    policy = Policy(
        certificate_days=settings.certificate_days,
        crl_valid=dt.timedelta(hours=settings.crl_valid_hours),
        external_min_validity_days=settings.external_min_validity_days,
        ca_min_validity_days=settings.ca_min_validity_days,
        trusted_ca_limit=settings.trusted_ca_limit,
    )
    return X509Service(store, open_ca(settings), devices, policy)


def build_api(settings: Settings, devices: DeviceDirectory | None = None) -> Flask:
    """The REST app (and, with X509_MGMT_RELAY=on, the outbox relay thread). Opens a connection pool, creates
    the tables and the CA when missing; call :func:`close_api` when done."""
    store = PostgresStore(settings.db_url, max_connections=settings.db_max_connections)
    try:
        store.migrate()
        service = build_service(settings, store, devices)
    except Exception:
        store.close()
        raise
    health = Health(SERVICE)
    health.add_check("postgres", store.ping)
    key_file = settings.common.jwt_public_key_file

    def public_key() -> str:
        return load_public_key(key_file)

    # Every caller checked as the gateway checks it (the gateway routes /x509/v1/... unchanged).
    token_check = TokenCheck.from_settings(settings.common, public_key)
    app = create_app(SERVICE, health, public_key=public_key, token_check=token_check)
    app.register_blueprint(api.blueprint(service, settings.page_limit, settings.page_max_limit))
    app.extensions["x509_store"] = store
    app.extensions["x509_service"] = service
    if settings.relay:
        bootstrap = settings.common.kafka_bootstrap
        relay = OutboxRelay(
            settings.db_url,
            publisher=kafka.get_producer(bootstrap),
            ensure_topics=lambda names: kafka.ensure_topics(bootstrap, names),
            poll_interval=settings.relay_poll_seconds,
            on_round=service.upkeep,
        ).start()
        health.add_check("outbox-relay", relay.alive)
        app.extensions["x509_relay"] = relay
    return app


def close_api(app: Flask) -> None:
    relay: OutboxRelay | None = app.extensions.get("x509_relay")
    if relay is not None:
        relay.stop()
    store: PostgresStore = app.extensions["x509_store"]
    store.close()


def build_worker(settings: Settings, devices: DeviceDirectory | None = None) -> Worker:
    """The device-event consumer and tenancy readers (``python -m x509_mgmt worker``); not started. Close its
    store with ``worker.service.store.close()`` after stopping it."""
    store = PostgresStore(settings.db_url, max_connections=2)
    try:
        store.migrate()
        service = build_service(settings, store, devices)
    except Exception:
        store.close()
        raise
    return Worker(service, settings.common.kafka_bootstrap, settings.common.auth_url)
