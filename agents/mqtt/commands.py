"""Kafka -> MQTT, and the device cache's feed: device events of every served tenant.

The agent runs this handler twice (app.py): as each process's cache feed (``cache`` given, no actions: every
process must know every device) and as the platform's action consumer (``publish``, ``on_remove``,
``on_disable`` given, no cache: each event is acted on once, by one process of a shared consumer group).

- create / update / remove: applied to the device cache; in credentials mode a removed device's MQTT
  credentials are deleted and its live sessions ended (``on_remove``) before the event is committed.
- create / update with ``"disabled": true`` (the device manager's flag): the device's live sessions end and
  its password logins are refused (``on_disable``); ``false`` lets its password log in again. A certificate
  login is not refused by the broker (a CRL entry is for good): the attrs bridge drops what a disabled device
  sends (reason ``device_disabled``), whatever the listener.
- configure: ``data.attrs`` as JSON to ``<tenant>:<device-id>/config`` at QoS 1. The handler returns (and the
  ConsumerLoop commits the event) only after the broker acknowledged the publish; if it did not, the handler
  raises Unavailable and the loop retries (at-least-once towards the device). Consecutive configure events of a
  consumed batch are published together, in order on the one connection, and their acknowledgements awaited
  together (:meth:`DeviceEventHandler.handle_batch`): a burst costs one broker round trip, not one per event.

The tenant is the tenant of the topic; an event naming another tenant in ``meta.service`` is refused (so one
tenant's topic can never address another tenant's device).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from confluent_kafka import Message

from agents.core.cache import DeviceCache
from agents.core.payload import DeviceRef, Drop, parse_device
from agents.core.stats import Statistics
from agents.mqtt.metrics import CONFIG_SENT
from agents.mqtt.topics import config_topic, legacy_config_topic
from ondas.contracts import ContractError, DeviceEvent
from ondas.log import bind
from ondas.topics import parse

log = logging.getLogger("agents.mqtt.commands")

# [(MQTT topic, payload), ...] -> published in this order; returns once the broker acknowledged every one;
# raises Unavailable otherwise.
PublishSync = Callable[[Sequence[tuple[str, bytes]]], None]
# MQTT username of a removed device -> returns once its sessions ended and it cannot log in; raises Unavailable.
RemoveSync = Callable[[str], None]
# (MQTT username, disabled) of a device disabled or enabled again in the device manager: a disabled device's
# sessions end and its password logins are refused; raises Unavailable.
DisableSync = Callable[[str, bool], None]


class DeviceEventHandler:
    def __init__(
        self,
        cache: DeviceCache | None,
        publish: PublishSync | None,
        on_remove: RemoveSync | None = None,
        on_disable: DisableSync | None = None,
        stats: Statistics | None = None,
        legacy_topics: bool = False,
    ) -> None:
        """``legacy_topics``: a configure is also published on ``/<tenant>/<device-id>/config``."""
        self._cache = cache
        self._legacy_topics = legacy_topics
        self._publish = publish
        self._on_remove = on_remove
        self._on_disable = on_disable
        self._stats = stats

    def __call__(self, msg: Message) -> None:
        self.handle_batch([msg])

    def handle_batch(self, batch: Sequence[Message]) -> None:
        """The events in order; runs of configure events are published together (see the module's doc)."""
        configures: list[tuple[str, DeviceEvent]] = []
        for msg in batch:
            tenant = parse(msg.topic() or "").tenant
            event = DeviceEvent.parse(msg.value() or b"")
            if event.tenant != tenant:
                raise ContractError(f"meta.service {event.tenant!r} is not the tenant of the topic ({tenant!r})")
            if event.event == "configure":
                if self._publish is not None:
                    configures.append((tenant, event))
                continue
            self._configure(configures)
            configures = []
            with bind(tenant=tenant, device=event.device_id):
                self._device_changed(tenant, event)
        self._configure(configures)

    def _device_changed(self, tenant: str, event: DeviceEvent) -> None:
        if self._cache is not None:
            self._cache.apply(tenant, event)
            log.info("device cache updated", extra={"event": event.event})
            if event.event == "remove" and self._stats is not None:
                self._stats.forget(tenant, event.device_id)
        try:
            ref = parse_device(f"{tenant}:{event.device_id}")
        except Drop:
            return  # an id no device could ever log in with
        if event.event == "remove":
            if self._on_remove is not None:
                self._on_remove(ref.username)
            return
        if self._on_disable is not None:
            # Every create/update states the flag: applied each time, so a redelivered event, a restart or a
            # missed event can never leave the broker's view behind the device manager's.
            self._on_disable(ref.username, event.data.get("disabled") is True)

    def _configure(self, events: list[tuple[str, DeviceEvent]]) -> None:
        if not events or self._publish is None:
            return
        messages: list[tuple[str, bytes]] = []
        sent: list[tuple[DeviceRef, list[str]]] = []
        for tenant, event in events:
            try:
                ref = parse_device(f"{tenant}:{event.device_id}")
            except Drop as exc:
                raise ContractError(f"data.id: {exc.detail}") from exc
            payload = json.dumps(event.data["attrs"], separators=(",", ":"), ensure_ascii=False).encode()
            topics = [config_topic(ref), *([legacy_config_topic(ref)] if self._legacy_topics else [])]
            messages.extend((topic, payload) for topic in topics)
            sent.append((ref, topics))
        self._publish(messages)
        for ref, topics in sent:
            CONFIG_SENT.labels(ref.tenant).inc()
            if self._stats is not None:
                self._stats.sent(ref.tenant, ref.device_id)
            with bind(tenant=ref.tenant, device=ref.device_id):
                log.info("configuration sent", extra={"topics": topics})
