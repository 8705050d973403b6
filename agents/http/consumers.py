"""The HTTP agent's hooks on the agents' one device-event handler (agents/core/device_events.py, which keeps
the device cache and refuses an event naming another tenant than its topic's):

- remove: the device's last-seen time is forgotten (no offline event for it). Its stored credentials are not
  this agent's to delete: the MQTT agent, which writes them, deletes them on the same event;
- create / update: nothing more (the cache has the ``disabled`` flag, which the ingest path checks);
- configure: not for this agent (HTTP devices are not sent commands).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agents.core.cache import DeviceCache
from agents.core.device_events import DeviceEventHandler
from agents.core.payload import DeviceRef
from agents.core.stats import Statistics
from agents.http.liveness import Liveness
from ondas.contracts import DeviceEvent

log = logging.getLogger("agents.http.consumers")


class HttpDeviceHooks:
    """The HTTP agent's :class:`~agents.core.device_events.DeviceEventHooks`."""

    def __init__(self, liveness: Liveness | None) -> None:
        self._liveness = liveness

    @property
    def takes_configure(self) -> bool:
        return False

    def configure(self, events: Sequence[tuple[str, DeviceEvent]]) -> None:
        return None

    def removed(self, ref: DeviceRef) -> None:
        # Unavailable (Redis away) propagates: the consumer loop retries the event.
        if self._liveness is not None:
            self._liveness.forget(ref.tenant, ref.device_id)
        log.info("device removed")

    def changed(self, ref: DeviceRef, disabled: bool) -> None:
        return None


def device_event_handler(cache: DeviceCache, liveness: Liveness | None, stats: Statistics) -> DeviceEventHandler:
    return DeviceEventHandler(cache, HttpDeviceHooks(liveness), stats)
