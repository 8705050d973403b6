"""The devices of every tenant, warmed from the device manager and kept current from device events.

Order matters: a tenant's snapshot is fetched *before* its device-events topic is consumed, so every event
applied lands on top of a snapshot that is at least as new as the event; create/update carry the whole device
and remove deletes it, so replaying older events after the snapshot converges to the latest state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import requests

from ondas.contracts import DeviceEvent
from ondas.kafka import ConsumerLoop, backoff_delay
from ondas.service_identity import service_authorization
from ondas.settings import CommonSettings, service_identity
from ondas.tenancy import TenancyTracker
from ondas.topics import DEVICE_DATA, DEVICE_EVENTS, DEVICE_LIVENESS, device_events, topic

log = logging.getLogger("agents.core.cache")

Device = dict[str, Any]


class DeviceCache:
    """Thread-safe: written by the warmer and the event consumer, read by the MQTT handler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, Device]] = {}
        # Devices a remove event deleted: a lookup answered before the removal must not bring them back.
        self._removed: set[tuple[str, str]] = set()

    def replace_tenant(self, tenant: str, devices: Iterable[Device]) -> None:
        snapshot = {str(d["id"]): d for d in devices if isinstance(d, dict) and d.get("id")}
        with self._lock:
            self._devices[tenant] = snapshot
        log.info("device cache warmed", extra={"tenant": tenant, "devices": len(snapshot)})

    def drop_tenant(self, tenant: str) -> None:
        with self._lock:
            self._devices.pop(tenant, None)

    def has_tenant(self, tenant: str) -> bool:
        return tenant in self._devices

    def tenants(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._devices)

    def get(self, tenant: str, device_id: str) -> Device | None:
        devices = self._devices.get(tenant)
        return None if devices is None else devices.get(device_id)

    def apply(self, tenant: str, event: DeviceEvent) -> None:
        """Apply a device event of ``tenant`` (configure events do not change the cache)."""
        with self._lock:
            devices = self._devices.get(tenant)
            if devices is None:  # not warmed (or no longer served): the snapshot will have it
                return
            if event.event in ("create", "update"):
                devices[event.device_id] = dict(event.data)
                self._removed.discard((tenant, event.device_id))
            elif event.event == "remove":
                devices.pop(event.device_id, None)
                self._removed.add((tenant, event.device_id))

    def put(self, tenant: str, device: Device) -> bool:
        """Add a device found by a lookup; refused (False) when the tenant is not served or it was removed."""
        device_id = str(device.get("id", ""))
        with self._lock:
            devices = self._devices.get(tenant)
            if devices is None or not device_id or (tenant, device_id) in self._removed:
                return False
            devices.setdefault(device_id, device)
            return True


def _identity_headers() -> dict[str, str]:
    """This process's service identity for the device manager's internal routes (none when it has none)."""
    identity = service_identity()
    return {"Authorization": service_authorization(*identity)} if identity else {}


def fetch_devices(device_manager_url: str, tenant: str, timeout: float = 10.0) -> list[Device]:
    """All devices of ``tenant`` from the device manager's internal route (with this process's service
    identity); raises on any failure."""
    url = f"{device_manager_url.rstrip('/')}/internal/tenants/{tenant}/devices"
    resp = requests.get(url, headers=_identity_headers(), timeout=timeout)
    resp.raise_for_status()
    devices = resp.json()["devices"]
    if not isinstance(devices, list):
        raise ValueError(f"{url}: 'devices' is not a list")
    return devices


def fetch_device(device_manager_url: str, tenant: str, device_id: str, timeout: float = 5.0) -> Device | None:
    """One device from the device manager's internal route (with this process's service identity); None when it
    does not exist."""
    url = f"{device_manager_url.rstrip('/')}/internal/tenants/{tenant}/devices/{device_id}"
    resp = requests.get(url, headers=_identity_headers(), timeout=timeout)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    device = resp.json()
    if not isinstance(device, dict) or device.get("id") != device_id:
        raise ValueError(f"{url}: not the device asked for")
    return device


class CacheWarmer:
    """Warms the cache of each tenant it is told about, retrying until the device manager answers, and then
    reports the set of warmed tenants (whose device events may now be consumed) through ``on_warmed``."""

    def __init__(
        self,
        cache: DeviceCache,
        device_manager_url: str,
        on_warmed: Callable[[frozenset[str]], None],
        retry_backoff: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self._cache = cache
        self._url = device_manager_url
        self._on_warmed = on_warmed
        self._backoff = retry_backoff
        self._cond = threading.Condition()
        self._wanted: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-cache-warmer", daemon=True)

    @property
    def warmed(self) -> bool:
        """Every wanted tenant has a warm cache."""
        return self._wanted <= self._cache.tenants()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(5)

    def set_tenants(self, tenants: frozenset[str]) -> None:
        with self._cond:
            self._wanted = tenants
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                wanted = self._wanted
                have = self._cache.tenants()
                if wanted == have:
                    self._cond.wait(1.0)
                    continue
            for tenant in have - wanted:
                self._cache.drop_tenant(tenant)
                log.info("tenant dropped from the device cache", extra={"tenant": tenant})
            for tenant in sorted(wanted - have):
                if not self._warm(tenant):
                    break
            self._on_warmed(self._cache.tenants())

    def _warm(self, tenant: str) -> bool:
        attempt = 0
        while not self._stop.is_set() and tenant in self._wanted:
            try:
                self._cache.replace_tenant(tenant, fetch_devices(self._url, tenant))
                return True
            except (requests.RequestException, KeyError, ValueError) as exc:
                attempt += 1
                delay = backoff_delay(attempt, self._backoff)
                log.warning(
                    "device manager not answering, retrying",
                    extra={"tenant": tenant, "error": f"{type(exc).__name__}: {exc}", "attempt": attempt},
                )
                self._stop.wait(delay)
        return False


# What every agent's tenancy bootstrap creates per tenant.
AGENT_SUBJECTS = [DEVICE_DATA, DEVICE_EVENTS, DEVICE_LIVENESS]


def follow_devices(
    cache: DeviceCache,
    consumers: Sequence[ConsumerLoop],
    *,
    service: str,
    settings: CommonSettings,
    device_manager_url: str,
    also: Sequence[tuple[ConsumerLoop, str]] = (),
) -> tuple[CacheWarmer, TenancyTracker]:
    """The cache's feed, as every agent wires it: auth's tenants (tenancy bootstrap) -> the warmer fetches each
    tenant's devices -> once warmed, ``consumers`` follow that tenant's device events. ``also``: (consumer,
    subject) pairs that follow ``<tenant>.<subject>`` of the same tenants (the topics are created for them)."""

    def follow(tenants: frozenset[str]) -> None:
        for consumer in consumers:
            consumer.set_topics(device_events(t) for t in tenants)
        for consumer, subject in also:
            consumer.set_topics(topic(t, subject) for t in tenants)

    warmer = CacheWarmer(cache, device_manager_url, on_warmed=follow)
    tracker = TenancyTracker(
        service=service,
        auth_url=settings.auth_url,
        bootstrap=settings.kafka_bootstrap,
        subjects=[*AGENT_SUBJECTS, *(subject for _, subject in also)],
        on_change=warmer.set_tenants,
    )
    return warmer, tracker
