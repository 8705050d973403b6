"""Kafka handlers of the certificate authority (``python -m x509_mgmt worker``):

- device events of every tenant (``<tenant>.dojot.device-manager.device``, consumer group
  ``x509-mgmt.device-events``): a ``remove`` revokes the certificates the platform issued to the device and
  dissociates the external ones (:meth:`X509Service.device_removed`); the offset is committed only after that;
- the tenancy topic: tenants created at run time are followed (TenancyTracker), and a deleted tenant's
  certificates and trusted CAs are purged once (TenantPurge, group ``x509-mgmt.tenant-purge``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from confluent_kafka import Message

from ondas.contracts import DeviceEvent
from ondas.health import Health
from ondas.kafka import ConsumerLoop, per_message
from ondas.tenancy import TenancyTracker, TenantPurge
from ondas.topics import DEVICE_EVENTS, device_events
from x509_mgmt.events import SUBJECT
from x509_mgmt.service import X509Service

log = logging.getLogger("x509_mgmt.consumers")

SERVICE = "x509-mgmt"
DEVICE_EVENTS_GROUP = f"{SERVICE}.device-events"


def handle_device_event(service: X509Service, msg: Message) -> None:
    event = DeviceEvent.parse(msg.value() or b"")
    if event.event == "remove":
        service.device_removed(event.tenant, event.device_id)


class Worker:
    """The device-event consumer and the tenancy readers, each on a thread of its own."""

    def __init__(
        self, service: X509Service, bootstrap: str, auth_url: str, group_id: str = DEVICE_EVENTS_GROUP
    ) -> None:
        self.service = service
        self.loop = ConsumerLoop(
            name=f"{SERVICE}-device-events",
            bootstrap=bootstrap,
            group_id=group_id,
            topics=[],
            handler=per_message(lambda msg: handle_device_event(service, msg)),
        )
        self.tracker = TenancyTracker(
            service=SERVICE,
            auth_url=auth_url,
            bootstrap=bootstrap,
            subjects=[DEVICE_EVENTS, SUBJECT],
            on_change=self._on_tenants,
        )
        self.purge = TenantPurge(service=SERVICE, auth_url=auth_url, bootstrap=bootstrap, purge=self._purge)
        self.health = Health(f"{SERVICE}-worker")
        self.health.add_check("tenancy", lambda: self.tracker.ready)
        self.health.add_check("tenant-purge", lambda: self.purge.ready)
        self.health.add_check("device-events", self.loop.ready.is_set)
        self.health.add_check("postgres", service.store.ping)
        self._thread: threading.Thread | None = None
        self.failed = False

    def _on_tenants(self, tenants: frozenset[str]) -> None:
        self.loop.set_topics([device_events(t) for t in sorted(tenants)])

    def _purge(self, tenant: str, deleted_at: float, recreated: bool) -> None:
        cutoff = dt.datetime.fromtimestamp(deleted_at, dt.UTC) if recreated else None
        counts = self.service.store.purge_tenant(tenant, created_before=cutoff)
        if counts["revoked"]:
            self.service.refresh_crl()
        log.info("deleted tenant's certificates and trusted CAs removed", extra={"tenant": tenant, **counts})

    def start(self) -> Worker:
        self.tracker.start()
        self.purge.start()
        self._thread = threading.Thread(target=self._run, name="x509-device-events", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.loop.run()
        except Exception:
            self.failed = True
            log.exception("device-event consumer stopped")

    def stop(self, timeout: float = 10.0) -> None:
        self.loop.stop()
        self.tracker.stop(timeout)
        self.purge.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
