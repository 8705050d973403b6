"""The business rules of the device manager. Every method takes the tenant explicitly.

Each change runs in one store transaction together with the event it causes (transactional outbox), so an
event is published if and only if its change committed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from device_manager.models import MAX_COUNT, Device, DeviceSpec, Page, PageRequest, Template, TemplateSpec
from ondas import topics
from ondas.contracts import DeviceEvent
from ondas.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from ondas.timestamps import now_ms

ID_ATTEMPTS = 20


class Tx(Protocol):
    """What the service needs from storage, inside one transaction. Every query is scoped to ``tenant``."""

    def insert_template(self, tenant: str, spec: TemplateSpec, created: datetime) -> Template: ...

    def get_templates(self, tenant: str, ids: list[int]) -> dict[int, Template]: ...

    def list_templates(self, tenant: str, page: PageRequest) -> tuple[list[Template], int]: ...

    def insert_device(self, tenant: str, device: Device) -> bool:
        """False (and nothing written) when the tenant already has a device with this id."""
        ...

    def get_device(self, tenant: str, device_id: str) -> Device | None: ...

    def list_devices(self, tenant: str, page: PageRequest | None) -> tuple[list[Device], int]: ...

    def delete_device(self, tenant: str, device_id: str) -> bool: ...

    def add_event(self, tenant: str, topic: str, key: str, payload: bytes) -> None:
        """Queue a message for the outbox relay; it is published only if this transaction commits."""
        ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[Tx]: ...


class NotConfigurable(Forbidden):
    """403 for actuating attributes that are not actuators; keeps dojot's ``status``/``attrs`` keys too."""

    def __init__(self, attrs: list[str]) -> None:
        super().__init__(
            f"some of the attributes are not configurable (not actuators of this device): {', '.join(attrs)}",
            attrs=attrs,
        )
        self.attrs = attrs

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": "some of the attributes are not configurable", "attrs": self.attrs}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def new_device_id() -> str:
    return secrets.token_hex(3)


class DeviceManager:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime] = _utcnow,
        clock_ms: Callable[[], int] = now_ms,
        new_id: Callable[[], str] = new_device_id,
    ) -> None:
        self._store = store
        self._clock = clock
        self._clock_ms = clock_ms
        self._new_id = new_id

    # -- templates -----------------------------------------------------------------------------------------
    def create_template(self, tenant: str, spec: TemplateSpec) -> Template:
        with self._store.transaction() as tx:
            return tx.insert_template(tenant, spec, self._clock())

    def get_template(self, tenant: str, template_id: int) -> Template:
        with self._store.transaction() as tx:
            found = tx.get_templates(tenant, [template_id])
        if template_id not in found:
            raise NotFound(f"No such template: {template_id}")
        return found[template_id]

    def list_templates(self, tenant: str, page: PageRequest) -> Page:
        with self._store.transaction() as tx:
            items, total = tx.list_templates(tenant, page)
        return Page(items, page.page, page.page_size, total)

    # -- devices -------------------------------------------------------------------------------------------
    def create_devices(self, tenant: str, spec: DeviceSpec, count: int = 1) -> list[Device]:
        if not 1 <= count <= MAX_COUNT:
            raise Invalid(f"count must be between 1 and {MAX_COUNT}")
        if spec.id is not None and count > 1:
            raise Invalid("a device id can only be given when creating a single device")
        topic = topics.device_events(tenant)
        created: list[Device] = []
        with self._store.transaction() as tx:
            found = tx.get_templates(tenant, list(spec.templates))
            missing = [str(t) for t in spec.templates if t not in found]
            if missing:
                raise Invalid(f"No such template: {', '.join(missing)}", templates=missing)
            templates = tuple(found[t] for t in spec.templates)
            _check_unique_attrs(templates)
            now = self._clock()
            for i in range(count):
                label = f"{spec.label}_{i}" if count > 1 else spec.label
                device = self._insert(tx, tenant, spec.id, label, templates, now)
                tx.add_event(tenant, topic, device.id, DeviceEvent.created(tenant, device.to_dict()).to_bytes())
                created.append(device)
        return created

    def _insert(
        self, tx: Tx, tenant: str, wanted: str | None, label: str, templates: tuple[Template, ...], now: datetime
    ) -> Device:
        if wanted is not None:
            device = Device(wanted, label, now, templates)
            if not tx.insert_device(tenant, device):
                raise Conflict(f"a device with id {wanted} already exists", id=wanted)
            return device
        for _ in range(ID_ATTEMPTS):
            device = Device(self._new_id(), label, now, templates)
            if tx.insert_device(tenant, device):
                return device
        raise Unavailable("Failed to generate unique device_id; try again")

    def get_device(self, tenant: str, device_id: str) -> Device:
        with self._store.transaction() as tx:
            device = tx.get_device(tenant, device_id)
        if device is None:
            raise NotFound(f"No such device: {device_id}")
        return device

    def list_devices(self, tenant: str, page: PageRequest) -> Page:
        with self._store.transaction() as tx:
            items, total = tx.list_devices(tenant, page)
        return Page(items, page.page, page.page_size, total)

    def all_devices(self, tenant: str) -> list[Device]:
        with self._store.transaction() as tx:
            items, _ = tx.list_devices(tenant, None)
        return items

    def delete_device(self, tenant: str, device_id: str) -> Device:
        with self._store.transaction() as tx:
            device = tx.get_device(tenant, device_id)
            if device is None or not tx.delete_device(tenant, device_id):
                raise NotFound(f"No such device: {device_id}")
            event = DeviceEvent.removed(tenant, device_id)
            tx.add_event(tenant, topics.device_events(tenant), device_id, event.to_bytes())
        return device

    def actuate(self, tenant: str, device_id: str, attrs: dict[str, Any]) -> None:
        with self._store.transaction() as tx:
            device = tx.get_device(tenant, device_id)
            if device is None:
                raise NotFound(f"No such device: {device_id}")
            actuators = device.actuators()
            offending = [label for label in attrs if label not in actuators]
            if offending:
                raise NotConfigurable(offending)
            event = DeviceEvent.configure(tenant, device_id, attrs, self._clock_ms())
            tx.add_event(tenant, topics.device_events(tenant), device_id, event.to_bytes())


def _check_unique_attrs(templates: tuple[Template, ...]) -> None:
    seen: dict[str, int] = {}
    for t in templates:
        for a in t.attrs:
            if a.label in seen:
                raise Invalid(
                    f"a device can not have repeated attributes: {a.label!r} is in templates {seen[a.label]} and {t.id}"
                )
            seen[a.label] = t.id
