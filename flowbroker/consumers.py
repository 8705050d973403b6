"""The worker: a consumer group over ``<tenant>.device-data`` and ``<tenant>.dojot.device-manager.device`` of every
tenant (runtime tenants too, through the tenancy topic), running each message through the tenant's enabled flows.

Per batch: the messages are parsed in order (device events also keep the engine's device cache: templates and
static attributes), then every flow of a tenant runs that tenant's messages in order on a thread of its own (so a
slow HTTP call delays its own flow only), then the batch's outputs are waited for; the consumer loop commits the
offsets only after that. Key = device id, so one device's messages are in one partition, in order."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import Message
from prometheus_client import Counter

from flowbroker.engine import CompiledFlow, Device, Engine, Incoming
from flowbroker.events import BatchOutputs
from flowbroker.models import Flow
from flowbroker.nodes.output import FLOW_HEADER, GENERATION_HEADER
from ondas.contracts import ContractError, DeviceData, DeviceEvent
from ondas.kafka import Producer
from ondas.topics import DEVICE_DATA, DEVICE_EVENTS
from ondas.topics import parse as parse_topic

log = logging.getLogger("flowbroker.consumers")

SKIPPED = Counter("flowbroker_messages_skipped_total", "Messages that break their contract (not run)", ["subject"])


class DeviceLookup(Protocol):
    def get(self, tenant: str, device_id: str) -> dict[str, Any] | None: ...


class FlowSource(Protocol):
    def enabled_flows(self, tenants: list[str]) -> dict[str, list[Flow]]: ...


def _header(msg: Message, name: str) -> str | None:
    headers: Any = msg.headers() or []
    for key, value in headers:
        if key == name and value is not None:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def device_of(data: dict[str, Any]) -> Device:
    """Templates and static attribute values of a device as the device manager's events carry it."""
    templates = tuple(str(t) for t in data.get("templates") or [])
    static: dict[str, Any] = {}
    attrs = data.get("attrs") or {}
    groups = attrs.values() if isinstance(attrs, dict) else [attrs]
    for group in groups:
        for attr in group if isinstance(group, list) else [group]:
            if isinstance(attr, dict) and attr.get("type") == "static" and "label" in attr:
                static[str(attr["label"])] = attr.get("static_value")
    return Device(id=str(data["id"]), templates=templates, static_attrs=static)


class FlowRunner:
    """The consumer loop's handler."""

    def __init__(
        self,
        engine: Engine,
        flows: FlowSource,
        producer: Producer,
        tenants: Any,
        refresh_seconds: float = 2.0,
        threads: int = 8,
        devices: DeviceLookup | None = None,
    ) -> None:
        self._engine = engine
        self._flows = flows
        self._producer = producer
        self._tenants = tenants  # () -> frozenset[str]
        self._refresh = refresh_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="flow")
        self._compiled: dict[str, list[CompiledFlow]] = {}
        self._loaded_at = -1.0
        self._devices: dict[tuple[str, str], Device] = {}
        self._lock = threading.Lock()
        self._lookup = devices
        self.handled = 0  # messages this runner handled (a worker's share of its group's load)

    def _device(self, tenant: str, device_id: str) -> Device | None:
        """The engine's view of a device: from its events, else (once) from the device manager. Unavailable when
        the device manager cannot be asked: the batch is retried, so no flow runs without the device's static
        attributes and templates."""
        key = (tenant, device_id)
        with self._lock:
            known = self._devices.get(key)
        if known is not None or self._lookup is None:
            return known
        found = self._lookup.get(tenant, device_id)
        device = device_of(found) if found is not None else Device(id=device_id)
        with self._lock:
            self._devices.setdefault(key, device)
            return self._devices[key]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def reload(self) -> None:
        tenants = sorted(self._tenants())
        found = self._flows.enabled_flows(tenants)
        compiled: dict[str, list[CompiledFlow]] = {}
        for tenant, flows in found.items():
            compiled[tenant] = []
            for flow in flows:
                try:
                    compiled[tenant].append(CompiledFlow.of(tenant, flow))
                except KeyError:  # a node type no longer in the catalogue: the flow cannot run
                    log.error("flow cannot be compiled", extra={"tenant": tenant, "flow": flow.id})
        self._compiled = compiled
        self._loaded_at = time.monotonic()

    def _incoming(self, msg: Message) -> Incoming | None:
        name = msg.topic() or ""
        where = parse_topic(name)
        message_id = f"{name}:{msg.partition()}:{msg.offset()}"
        try:
            if where.subject == DEVICE_DATA:
                data = DeviceData.parse(msg.value() or b"")
                if data.metadata.tenant != where.tenant:
                    raise ContractError("metadata.tenant is not the topic's tenant")
                generation = _header(msg, GENERATION_HEADER)
                return Incoming(
                    tenant=where.tenant,
                    device_id=data.metadata.deviceid,
                    kind="publish",
                    attrs=dict(data.attrs),
                    timestamp=data.metadata.timestamp,
                    message_id=message_id,
                    generation=int(generation) if generation and generation.isdigit() else 0,
                    source_flow=_header(msg, FLOW_HEADER),
                )
            if where.subject == DEVICE_EVENTS:
                event = DeviceEvent.parse(msg.value() or b"")
                if event.tenant != where.tenant:
                    raise ContractError("meta.service is not the topic's tenant")
                key = (where.tenant, event.device_id)
                with self._lock:
                    if event.event in ("create", "update"):
                        self._devices[key] = device_of(event.data)
                attrs = event.data.get("attrs") if event.event == "configure" else {}
                return Incoming(
                    tenant=where.tenant,
                    device_id=event.device_id,
                    kind=event.event,
                    attrs=attrs if isinstance(attrs, dict) else {},
                    timestamp=event.meta.timestamp,
                    message_id=message_id,
                    device_event=dict(event.data),
                )
        except ContractError as exc:
            SKIPPED.labels(where.subject).inc()
            log.warning("message skipped", extra={"topic": name, "offset": msg.offset(), "reason": str(exc)})
        return None

    def handle(self, batch: list[Message]) -> None:
        if self._loaded_at < 0 or time.monotonic() - self._loaded_at >= self._refresh:
            self.reload()
        by_tenant: dict[str, list[tuple[Incoming, Device | None]]] = {}
        removed: list[tuple[str, str]] = []
        for msg in batch:
            incoming = self._incoming(msg)
            if incoming is None:
                continue
            key = (incoming.tenant, incoming.device_id)
            if incoming.kind == "remove":
                removed.append(key)
            if not self._compiled.get(incoming.tenant):
                continue  # no flow of this tenant: nothing to run (nor to look up)
            by_tenant.setdefault(incoming.tenant, []).append((incoming, self._device(*key)))
        outputs = BatchOutputs(self._producer)
        futures = []
        for tenant, items in by_tenant.items():
            for flow in self._compiled.get(tenant, []):
                futures.append(self._pool.submit(self._run_flow, flow, items, outputs))
        for fut in futures:
            fut.result()
        outputs.wait()
        self.handled += len(batch)
        with self._lock:
            for key in removed:
                self._devices.pop(key, None)

    def _run_flow(self, flow: CompiledFlow, items: list[tuple[Incoming, Device | None]], outputs: BatchOutputs) -> None:
        sink = outputs.for_flow(flow.tenant, flow.id)
        for incoming, device in items:
            try:
                self._engine.run(flow, incoming, device, sink)
            except Exception:  # one flow's trouble never stops the others nor the worker
                log.exception(
                    "flow failed on a message",
                    extra={"tenant": flow.tenant, "flow": flow.id, "device": incoming.device_id},
                )
