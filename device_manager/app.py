"""The one place that wires the device manager together: store, service, HTTP app and outbox relay."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Flask

from device_manager import api
from device_manager.events import OutboxRelay
from device_manager.service import DeviceManager
from device_manager.settings import Settings
from device_manager.store_postgres import PostgresStore
from ondas import kafka
from ondas.authn import TokenCheck, load_public_key
from ondas.health import Health
from ondas.tenancy import TenantPurge
from ondas.web import create_app

SERVICE = "device-manager"

log = logging.getLogger("device_manager.app")


def build_api(settings: Settings) -> Flask:
    """The REST app. Opens a connection pool and creates the tables; call :func:`close_api` when done."""
    store = PostgresStore(settings.db_url, max_connections=settings.db_max_connections)
    try:
        store.migrate()
    except Exception:
        store.close()
        raise
    health = Health(SERVICE)
    health.add_check("postgres", store.ping)
    key_file = settings.common.jwt_public_key_file

    def public_key() -> str:
        return load_public_key(key_file)

    # Every caller checked as the gateway checks it (the gateway routes the device manager's paths unchanged).
    token_check = TokenCheck.from_settings(settings.common, public_key)
    # Bodies up to 16 MiB: an /import carries a whole tenant configuration.
    app = create_app(SERVICE, health, public_key=public_key, max_body_bytes=16 << 20, token_check=token_check)
    app.register_blueprint(api.blueprint(DeviceManager(store)))
    app.extensions["device_manager_store"] = store
    return app


def close_api(app: Flask) -> None:
    store: PostgresStore = app.extensions["device_manager_store"]
    store.close()


def build_relay(settings: Settings) -> OutboxRelay:
    """The outbox relay, publishing with the process's one Kafka producer."""
    bootstrap = settings.common.kafka_bootstrap
    return OutboxRelay(
        settings.db_url,
        publisher=kafka.get_producer(bootstrap),
        ensure_topics=lambda names: kafka.ensure_topics(bootstrap, names),
        poll_interval=settings.relay_poll_seconds,
    )


def migrate(settings: Settings) -> None:
    store = PostgresStore(settings.db_url, max_connections=1)
    try:
        store.migrate()
    finally:
        store.close()


def build_tenant_purge(settings: Settings, group_id: str | None = None) -> tuple[TenantPurge, PostgresStore]:
    """What removes a deleted tenant's templates, devices and queued events (run by the relay process). Returns
    the purge and the store it uses; close the store after stopping the purge. ``group_id`` replaces the
    purge's consumer group (``device-manager.tenant-purge``)."""
    store = PostgresStore(settings.db_url, max_connections=1)

    def purge(tenant: str, deleted_at: float, recreated: bool) -> None:
        cutoff = dt.datetime.fromtimestamp(deleted_at, dt.UTC) if recreated else None
        counts = store.purge_tenant(tenant, created_before=cutoff)
        log.info("deleted tenant's templates and devices removed", extra={"tenant": tenant, **counts})

    tenant_purge = TenantPurge(
        service=SERVICE,
        auth_url=settings.common.auth_url,
        bootstrap=settings.common.kafka_bootstrap,
        purge=purge,
        group_id=group_id,
    )
    return tenant_purge, store
