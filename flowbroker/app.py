"""The one place that wires the flowbroker together: the REST app (store, service, blueprint) and the worker
(flow store, context store, HTTP client, engine, consumer loop, tenancy)."""

from __future__ import annotations

import logging
import threading
from http.server import ThreadingHTTPServer

from flask import Flask

from flowbroker import api
from flowbroker.consumers import FlowRunner
from flowbroker.context_redis import RedisContextStore
from flowbroker.devices import DeviceManagerClient
from flowbroker.engine import Engine
from flowbroker.nodes.output import FTP
from flowbroker.nodes.request import SafeHttpClient, parse_networks
from flowbroker.service import FlowService
from flowbroker.settings import Settings
from flowbroker.store_postgres import PostgresStore
from ondas import kafka
from ondas.authn import TokenCheck, load_public_key
from ondas.health import Health, serve_health
from ondas.kafka import ConsumerLoop
from ondas.tenancy import TenancyTracker, TenantPurge
from ondas.topics import DEVICE_DATA, DEVICE_EVENTS, NOTIFICATIONS, device_data, device_events
from ondas.web import create_app

SERVICE = "flowbroker"

log = logging.getLogger("flowbroker.app")


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

    token_check = TokenCheck.from_settings(settings.common, public_key)
    app = create_app(SERVICE, health, public_key=public_key, max_body_bytes=4 << 20, token_check=token_check)
    devices = DeviceManagerClient(settings.device_manager_url) if settings.device_manager_url else None
    app.register_blueprint(api.blueprint(FlowService(store, devices)))
    app.extensions["flowbroker_store"] = store
    return app


def close_api(app: Flask) -> None:
    store: PostgresStore = app.extensions["flowbroker_store"]
    store.close()


class Worker:
    """The worker process. ``start()`` learns the tenants and serves health; ``run()`` consumes until ``stop()``."""

    def __init__(self, settings: Settings, instance: str = SERVICE, producer: kafka.Producer | None = None) -> None:
        self.settings = settings
        common = settings.common
        self.store = PostgresStore(settings.db_url, max_connections=2)
        self.store.migrate()
        self.contexts = RedisContextStore(settings.redis_url)
        self.http = SafeHttpClient(
            settings.http_timeout_seconds,
            settings.http_max_response_bytes,
            parse_networks(settings.http_allowed_networks),
        )
        self.devices = DeviceManagerClient(settings.device_manager_url) if settings.device_manager_url else None
        self.engine = Engine(
            self.contexts, self.http, settings.max_hops, settings.max_generations, actuator=self.devices
        )
        self.producer = producer or kafka.get_producer(common.kafka_bootstrap)
        self.tracker = TenancyTracker(
            service=instance,
            auth_url=common.auth_url,
            bootstrap=common.kafka_bootstrap,
            subjects=[DEVICE_DATA, DEVICE_EVENTS, NOTIFICATIONS, FTP],
            on_change=self._on_tenants,
        )
        self.runner = FlowRunner(
            self.engine,
            self.store,
            self.producer,
            lambda: self.tracker.tenants,
            refresh_seconds=settings.flows_refresh_seconds,
            threads=settings.flow_threads,
            devices=self.devices,
        )
        self.loop = ConsumerLoop(
            name=SERVICE,
            bootstrap=common.kafka_bootstrap,
            group_id=settings.group_id,
            topics=[],
            handler=self.runner.handle,
            batch_size=settings.batch_size,
        )
        # One purge per DELETE event for the whole worker group (a durable consumer group of its own).
        self.purge = TenantPurge(
            service=settings.group_id,
            auth_url=common.auth_url,
            bootstrap=common.kafka_bootstrap,
            purge=self._purge,
        )
        self.health = Health(f"{SERVICE}-worker")
        self.health.add_check("tenant-purge", lambda: self.purge.ready)
        self.health.add_check("tenancy", lambda: self.tracker.ready)
        self.health.add_check(
            "consumer", lambda: self._running.is_set() and (self.loop.ready.is_set() or not self.loop.topics)
        )
        self.health.add_check("postgres", self.store.ping)
        self.health.add_check("redis", self.contexts.ping)
        self._running = threading.Event()
        self._http: ThreadingHTTPServer | None = None

    def _on_tenants(self, tenants: frozenset[str]) -> None:
        self.loop.set_topics([name for t in sorted(tenants) for name in (device_data(t), device_events(t))])

    def _purge(self, tenant: str, deleted_at: float, recreated: bool) -> None:
        """A deleted tenant's flows go (only those from before its deletion when it exists again), and its context
        values when it does not exist again."""
        flows = self.store.purge_tenant(tenant, int(deleted_at * 1000) if recreated else None)
        contexts = 0 if recreated else self.contexts.drop_tenant(tenant)
        log.info("deleted tenant's flows removed", extra={"tenant": tenant, "flows": flows, "contexts": contexts})

    def start(self, health_port: int | None = None) -> None:
        port = self.settings.worker_health_port if health_port is None else health_port
        self._http = serve_health(self.health, self.settings.common.bind_host, port)
        self.tracker.start()
        self.purge.start()

    def run(self) -> None:
        self._running.set()
        try:
            self.loop.run()
        finally:
            self._running.clear()

    def stop(self) -> None:
        self.loop.stop()
        self.tracker.stop()
        self.purge.stop()

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.runner.close()
        self.store.close()
        self.contexts.close()
