"""Kafka -> MQTT, and the device cache's feed: the MQTT agent's hooks on the agents' one device-event handler
(agents/core/device_events.py, which keeps the cache and refuses events of another tenant).

The agent runs the handler twice (app.py): as each process's cache feed (``cache`` given, no actions: every
process must know every device) and as the platform's action consumer (``publish``, ``on_remove``,
``on_disable`` given, no cache: each event is acted on once, by one process of a shared consumer group).

- create / update / remove: applied to the device cache; a removed device's stored credentials are deleted
  (this agent writes them, so it deletes them, for every agent), its certificates revoked, its MQTT
  credentials deleted and its live sessions ended (``on_remove``, composed in app.py) before the event is
  committed.
- create / update with ``"disabled": true`` (the device manager's flag): the device's live sessions end and
  its password logins are refused (``on_disable``); ``false`` lets its password log in again. A certificate
  login is not refused by the broker (a CRL entry is for good): the attrs bridge drops what a disabled device
  sends (reason ``device_disabled``), whatever the listener.
- configure: ``data.attrs`` as JSON to ``<tenant>:<device-id>/config`` at QoS 1. The handler returns (and the
  ConsumerLoop commits the event) only after the broker acknowledged the publish; if it did not, the handler
  raises Unavailable and the loop retries (at-least-once towards the device). Consecutive configure events of a
  consumed batch are published together, in order on the one connection, and their acknowledgements awaited
  together (:meth:`DeviceEventHandler.handle_batch`): a burst costs one broker round trip, not one per event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from agents.core.cache import DeviceCache
from agents.core.credentials_redis import RedisCredentialStore
from agents.core.device_events import DeviceEventHandler as CoreDeviceEventHandler
from agents.core.payload import DeviceRef, Drop, parse_device
from agents.core.stats import Statistics
from agents.mqtt.metrics import CONFIG_SENT
from agents.mqtt.topics import config_topic, legacy_config_topic
from ondas.contracts import ContractError, DeviceEvent
from ondas.log import bind

log = logging.getLogger("agents.mqtt.commands")

# [(MQTT topic, payload), ...] -> published in this order; returns once the broker acknowledged every one;
# raises Unavailable otherwise.
PublishSync = Callable[[Sequence[tuple[str, bytes]]], None]
# MQTT username of a removed device -> returns once its sessions ended and it cannot log in; raises Unavailable.
RemoveSync = Callable[[str], None]
# (MQTT username, disabled) of a device disabled or enabled again in the device manager: a disabled device's
# sessions end and its password logins are refused; raises Unavailable.
DisableSync = Callable[[str, bool], None]


class MqttDeviceActions:
    """The MQTT agent's :class:`~agents.core.device_events.DeviceEventHooks`."""

    def __init__(
        self,
        publish: PublishSync | None,
        on_remove: RemoveSync | None = None,
        on_disable: DisableSync | None = None,
        stats: Statistics | None = None,
        legacy_topics: bool = False,
        credentials: RedisCredentialStore | None = None,
    ) -> None:
        """``legacy_topics``: a configure is also published on ``/<tenant>/<device-id>/config``;
        ``credentials``: the device credential store this agent writes (and so deletes from)."""
        self._publish = publish
        self._credentials = credentials
        self._on_remove = on_remove
        self._on_disable = on_disable
        self._stats = stats
        self._legacy_topics = legacy_topics

    @property
    def takes_configure(self) -> bool:
        return self._publish is not None

    def removed(self, ref: DeviceRef) -> None:
        """The device's stored credentials deleted (every agent then refuses its password), then its identity
        through ``on_remove``; Unavailable (Redis, the broker) propagates, so the event is retried."""
        if self._credentials is not None:
            had = self._credentials.delete(ref.tenant, ref.device_id)
            with bind(tenant=ref.tenant, device=ref.device_id):
                log.info("device credentials deleted", extra={"had_password": had})
        if self._on_remove is not None:
            self._on_remove(ref.username)

    def changed(self, ref: DeviceRef, disabled: bool) -> None:
        if self._on_disable is not None:
            self._on_disable(ref.username, disabled)

    def configure(self, events: Sequence[tuple[str, DeviceEvent]]) -> None:
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


class DeviceEventHandler(CoreDeviceEventHandler):
    """The agents' one device-event handler with the MQTT agent's hooks (no logic of its own)."""

    def __init__(
        self,
        cache: DeviceCache | None,
        publish: PublishSync | None,
        on_remove: RemoveSync | None = None,
        on_disable: DisableSync | None = None,
        stats: Statistics | None = None,
        legacy_topics: bool = False,
        credentials: RedisCredentialStore | None = None,
    ) -> None:
        actions = MqttDeviceActions(publish, on_remove, on_disable, stats, legacy_topics, credentials)
        super().__init__(cache, actions, stats)
