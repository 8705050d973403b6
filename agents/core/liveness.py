"""The one liveness publisher of every agent: ``online`` / ``offline`` events on ``<tenant>.device-liveness``
(key = device id, the headers of :func:`~agents.core.payload.device_headers`), stamped with the agent time,
strictly increasing per device (an online and the offline right after it keep their order), counted in the
agent's ``*_liveness_events_total{tenant,event,reason}`` and logged once Kafka accepted them.

What makes a device online or offline is the protocol's and stays with each agent: the MQTT agent follows the
broker's connect/disconnect log lines (agents/mqtt/liveness.py), the HTTP agent last-seen times in Redis and a
timeout (agents/http/liveness.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal

from prometheus_client import Counter

from agents.core.payload import device_headers
from ondas.contracts import DeviceDataMeta, DeviceLiveness
from ondas.kafka import Producer
from ondas.stamping import DeviceClock
from ondas.timestamps import now_ms
from ondas.topics import device_liveness

log = logging.getLogger("agents.core.liveness")

Event = Literal["online", "offline"]


class LivenessPublisher:
    """Thread-safe."""

    def __init__(
        self, producer: Producer | None, protocol: str, events: Counter, clock: Callable[[], int] = now_ms
    ) -> None:
        """``producer`` None: messages are only built (:meth:`message`), for a caller that sends them later."""
        self._producer = producer
        self._protocol = protocol
        self._events = events
        self._stamps = DeviceClock(clock)

    def message(self, tenant: str, device_id: str, event: Event, reason: str) -> DeviceLiveness:
        """The event, stamped now (call it in the device's order)."""
        return DeviceLiveness(
            metadata=DeviceDataMeta(deviceid=device_id, tenant=tenant, timestamp=self._stamps.stamp(tenant, device_id)),
            event=event,
            reason=reason,
            protocol=self._protocol,
        )

    def send(self, message: DeviceLiveness) -> Future[Any]:
        """Queue the event; the future resolves when Kafka accepted it (then it is counted and logged)."""
        if self._producer is None:
            raise RuntimeError("this liveness publisher has no producer")
        meta = message.metadata
        delivery = self._producer.send(
            device_liveness(meta.tenant),
            message.to_bytes(),
            key=meta.deviceid,
            headers=device_headers(meta.tenant, meta.deviceid),
        )

        def counted(fut: Future[Any]) -> None:
            if fut.exception() is None:
                self._events.labels(meta.tenant, message.event, message.reason).inc()
                log.info(
                    "device %s",
                    message.event,
                    extra={"tenant": meta.tenant, "device": meta.deviceid, "reason": message.reason},
                )

        delivery.add_done_callback(counted)
        return delivery

    def forget(self, tenant: str, device_id: str) -> None:
        """A removed device: its agent time starts afresh."""
        self._stamps.forget(tenant, device_id)
