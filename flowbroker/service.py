"""The flowbroker's rules for flows; every method takes the tenant explicitly."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from flowbroker.models import Flow, FlowSpec, InvalidFlow, UnknownFlow, now_ms, referenced_devices


class Store(Protocol):
    def insert(self, tenant: str, flow: Flow) -> None: ...
    def get(self, tenant: str, flow_id: str) -> Flow | None: ...
    def list(self, tenant: str) -> list[Flow]: ...
    def replace(self, tenant: str, flow: Flow) -> Flow | None: ...
    def delete(self, tenant: str, flow_id: str) -> Flow | None: ...
    def delete_all(self, tenant: str) -> int: ...


class Devices(Protocol):
    def get(self, tenant: str, device_id: str) -> dict[str, Any] | None: ...


class FlowService:
    """``devices``: when given, every device a flow names must be one of the tenant's (400 naming the node)."""

    def __init__(self, store: Store, devices: Devices | None = None) -> None:
        self._store = store
        self._devices = devices

    def _check_devices(self, tenant: str, spec: FlowSpec) -> None:
        if self._devices is None:
            return
        for node_id, device_id in referenced_devices(spec.flow):
            if self._devices.get(tenant, device_id) is None:
                raise InvalidFlow(f"device {device_id} does not exist in this tenant", node_id)

    def create(self, tenant: str, spec: FlowSpec) -> Flow:
        self._check_devices(tenant, spec)
        stamp = now_ms()
        flow = Flow(id=str(uuid.uuid4()), name=spec.name, enabled=spec.enabled, flow=spec.flow, created=stamp,
                    updated=stamp)  # fmt: skip
        self._store.insert(tenant, flow)
        return flow

    def list(self, tenant: str) -> list[Flow]:
        return self._store.list(tenant)

    def get(self, tenant: str, flow_id: str) -> Flow:
        flow = self._store.get(tenant, flow_id)
        if flow is None:
            raise UnknownFlow(flow_id)
        return flow

    def replace(self, tenant: str, flow_id: str, spec: FlowSpec) -> Flow:
        self._check_devices(tenant, spec)
        updated = self._store.replace(
            tenant, Flow(id=flow_id, name=spec.name, enabled=spec.enabled, flow=spec.flow, created=0, updated=now_ms())
        )
        if updated is None:
            raise UnknownFlow(flow_id)
        return updated

    def delete(self, tenant: str, flow_id: str) -> Flow:
        removed = self._store.delete(tenant, flow_id)
        if removed is None:
            raise UnknownFlow(flow_id)
        return removed

    def delete_all(self, tenant: str) -> int:
        return self._store.delete_all(tenant)
