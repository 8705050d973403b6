"""Wiring of the persister: store, service, consumer loop, tenancy and health, in one place."""

from __future__ import annotations

import logging
import threading
from http.server import ThreadingHTTPServer

from ondas import log as ondas_log
from ondas.health import Health, serve_health
from ondas.kafka import ConsumerLoop
from ondas.tenancy import TenancyTracker, TenantPurge
from ondas.topics import DEVICE_DATA, DEVICE_EVENTS, NOTIFICATIONS, device_data, device_events, notifications
from persister.consumers import KafkaDeadLetter
from persister.service import PersisterService
from persister.settings import PersisterSettings
from persister.store_mongo import MongoPointStore

log = logging.getLogger("persister")


class Persister:
    """The persister process. ``start()`` learns the tenants and serves health; ``run()`` consumes until
    ``stop()`` (it raises :class:`ondas.kafka.StopConsuming` on an error whose policy is STOP)."""

    def __init__(self, settings: PersisterSettings, instance: str = "persister") -> None:
        # ``instance`` names the tenancy consumer group (``<instance>.tenancy.<host>.<pid>``); tests that run
        # several persisters in one process give each its own, since they would otherwise share that group.
        self.settings = settings
        common = settings.common
        self.store = MongoPointStore(settings.mongo_url, settings.db_prefix, ttl_seconds=settings.ttl_seconds)
        self.service = PersisterService(
            self.store,
            KafkaDeadLetter(common.kafka_bootstrap, settings.group_id),
            drop_removed_devices=settings.drop_removed_devices,
        )
        self.loop = ConsumerLoop(
            name="persister",
            bootstrap=common.kafka_bootstrap,
            group_id=settings.group_id,
            topics=[],
            handler=self.service.handle,
            batch_size=settings.batch_size,
        )
        self.tracker = TenancyTracker(
            service=instance,
            auth_url=common.auth_url,
            bootstrap=common.kafka_bootstrap,
            subjects=[DEVICE_DATA, DEVICE_EVENTS, NOTIFICATIONS],
            on_change=self._on_tenants,
        )
        # One purge per DELETE event for the whole persister group (a durable consumer group of its own).
        self.purge = TenantPurge(
            service=settings.group_id,
            auth_url=common.auth_url,
            bootstrap=common.kafka_bootstrap,
            purge=self._purge,
        )
        self.health = Health("persister")
        self.health.add_check("tenancy", lambda: self.tracker.ready)
        self.health.add_check("tenant-purge", lambda: self.purge.ready)
        self.health.add_check("consumer", self._consumer_ready)
        self.health.add_check("mongo", self.store.ping)
        self._running = threading.Event()
        self._http: ThreadingHTTPServer | None = None

    def _on_tenants(self, tenants: frozenset[str]) -> None:
        topics = [name for t in sorted(tenants) for name in (device_data(t), device_events(t), notifications(t))]
        log.info("following device-data, device-event and notification topics", extra={"topics": topics})
        self.loop.set_topics(topics)

    def _purge(self, tenant: str, deleted_at: float, recreated: bool) -> None:
        """Drop a deleted tenant's database; when the tenant exists again, only what is timed before its
        deletion. Unavailable (MongoDB away) propagates: the event is retried."""
        with ondas_log.bind(tenant=tenant):
            if recreated:
                deleted = self.store.drop_tenant_before(tenant, int(deleted_at * 1000))
                log.info("deleted tenant's data before its deletion dropped", extra={"points": deleted})
            else:
                self.store.drop_tenant(tenant)
                log.info("deleted tenant's data dropped")

    def _consumer_ready(self) -> bool:
        # With no tenant there is nothing to consume, and the loop never polls; that is still ready.
        return self._running.is_set() and (self.loop.ready.is_set() or not self.loop.topics)

    def start(self, health_port: int | None = None) -> None:
        """Learn the tenants (blocks until auth answers) and serve health; ``health_port=0`` picks a port."""
        port = self.settings.health_port if health_port is None else health_port
        self._http = serve_health(self.health, self.settings.common.bind_host, port)
        self.tracker.start()
        self.purge.start()

    @property
    def health_port(self) -> int:
        assert self._http is not None
        return int(self._http.server_address[1])

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
        """Release the HTTP server and the MongoDB client (after ``run()`` returned)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.store.close()
