"""The one device-event handler of every agent: device events of every served tenant (the device manager's
``<tenant>.dojot.device-manager.device``), with what each agent does about them left to its hooks.

- create / update / remove: applied to the device cache (when the handler has one: an agent may run a handler
  that only acts, see the MQTT agent's app.py), and a removed device's statistics forgotten;
- then the agent's :class:`DeviceEventHooks`: ``removed`` for a remove, ``changed`` (with the device manager's
  ``disabled`` flag) for every create/update, so a redelivered event, a restart or a missed event can never
  leave the agent's view behind the device manager's; ``configure`` for runs of consecutive configure events of
  a consumed batch, in order (the MQTT agent publishes them together). A hook that fails raises (Unavailable):
  the consumer loop retries the event, so it is committed only once every hook did its part.

The tenant is the tenant of the topic; an event naming another tenant in ``meta.service`` is refused (so one
tenant's topic can never address another tenant's device). Hooks are only called for device ids a device could
log in with (``removed``/``changed``); configure events are handed over as they came.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import Message

from agents.core.cache import DeviceCache
from agents.core.payload import DeviceRef, Drop, parse_device
from agents.core.stats import Statistics
from ondas.contracts import ContractError, DeviceEvent
from ondas.log import bind
from ondas.topics import parse

log = logging.getLogger("agents.core.device_events")


class DeviceEventHooks(Protocol):
    """What an agent does about device events, besides keeping its cache (every method may raise Unavailable)."""

    @property
    def takes_configure(self) -> bool:
        """Whether configure events are for this agent (else they are skipped)."""
        ...

    def configure(self, events: Sequence[tuple[str, DeviceEvent]]) -> None:
        """A run of consecutive configure events, as (tenant, event), in order."""
        ...

    def removed(self, ref: DeviceRef) -> None: ...

    def changed(self, ref: DeviceRef, disabled: bool) -> None: ...


class DeviceEventHandler:
    def __init__(
        self,
        cache: DeviceCache | None,
        hooks: DeviceEventHooks | None = None,
        stats: Statistics | None = None,
    ) -> None:
        self._cache = cache
        self._hooks = hooks
        self._stats = stats

    def __call__(self, msg: Message) -> None:
        self.handle_batch([msg])

    def handle_batch(self, batch: Sequence[Message]) -> None:
        """The events in order; runs of configure events go to the hooks together."""
        takes_configure = self._hooks is not None and self._hooks.takes_configure
        configures: list[tuple[str, DeviceEvent]] = []
        for msg in batch:
            tenant = parse(msg.topic() or "").tenant
            event = DeviceEvent.parse(msg.value() or b"")
            if event.tenant != tenant:
                raise ContractError(f"meta.service {event.tenant!r} is not the tenant of the topic ({tenant!r})")
            if event.event == "configure":
                if takes_configure:
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
        if self._hooks is None:
            return
        try:
            ref = parse_device(f"{tenant}:{event.device_id}")
        except Drop:
            return  # an id no device could ever log in with
        if event.event == "remove":
            self._hooks.removed(ref)
        else:
            self._hooks.changed(ref, event.data.get("disabled") is True)

    def _configure(self, events: list[tuple[str, DeviceEvent]]) -> None:
        if events and self._hooks is not None:
            self._hooks.configure(events)
