"""The device cache's feed: device events of every served tenant.

- create / update / remove: applied to the device cache;
- remove: the device's stored credentials are deleted (this agent is where that happens, for every agent: the
  MQTT agent only writes credentials) and its last-seen time forgotten;
- configure: not for this agent (HTTP devices are not sent commands).

The tenant is the tenant of the topic; an event naming another tenant in ``meta.service`` is refused.
"""

from __future__ import annotations

import logging

from confluent_kafka import Message

from agents.core.cache import DeviceCache
from agents.core.credentials import CredentialStore
from agents.core.stats import Statistics
from agents.http.liveness import Liveness
from ondas.contracts import ContractError, DeviceEvent
from ondas.log import bind
from ondas.topics import parse

log = logging.getLogger("agents.http.consumers")


class DeviceEventHandler:
    def __init__(
        self,
        cache: DeviceCache,
        credentials: CredentialStore,
        liveness: Liveness | None,
        stats: Statistics | None = None,
    ) -> None:
        self._stats = stats
        self._cache = cache
        self._credentials = credentials
        self._liveness = liveness

    def __call__(self, msg: Message) -> None:
        tenant = parse(msg.topic() or "").tenant
        event = DeviceEvent.parse(msg.value() or b"")
        if event.tenant != tenant:
            raise ContractError(f"meta.service {event.tenant!r} is not the tenant of the topic ({tenant!r})")
        if event.event == "configure":
            return
        with bind(tenant=tenant, device=event.device_id):
            self._cache.apply(tenant, event)
            if event.event == "remove":
                # Unavailable (Redis away) propagates: the consumer loop retries the event.
                had = self._credentials.delete(tenant, event.device_id)
                if self._liveness is not None:
                    self._liveness.forget(tenant, event.device_id)
                if self._stats is not None:
                    self._stats.forget(tenant, event.device_id)
                log.info("device removed", extra={"credentials_deleted": had})
