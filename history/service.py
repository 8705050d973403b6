"""History's rules: which attributes to read, how many entries, and when there is no data."""

from __future__ import annotations

from typing import Any, Protocol

from history.models import SHAPE_CONSISTENT, AttrNotFound, DeviceNotFound, Entry, HistoryQuery

Json = list[dict[str, Any]] | dict[str, list[dict[str, Any]]]
Grouped = list[Entry] | dict[str, list[Entry]]


class HistoryStore(Protocol):
    def attrs(self, tenant: str, device_id: str) -> list[str]: ...

    def entries(
        self,
        tenant: str,
        device_id: str,
        attr: str,
        *,
        date_from_ms: int | None,
        date_to_ms: int | None,
        newest_first: bool,
        limit: int,
    ) -> list[Entry]: ...

    def latest(self, tenant: str, device_id: str) -> list[Entry]: ...

    def ping(self) -> bool: ...


class HistoryService:
    def __init__(self, store: HistoryStore, max_results: int = 10_000) -> None:
        self._store = store
        self._max = max_results

    def history(self, tenant: str, device_id: str, query: HistoryQuery) -> Json:
        """dojot's shape: one requested attribute gives a list, several or none an object keyed by attribute,
        and a device (or the one attribute) without any stored data is a 404. The consistent shape is always
        the object, and no data is simply empty."""
        found = self.entries(tenant, device_id, query)
        if isinstance(found, list):
            return [e.to_json() for e in found]
        return {attr: [e.to_json() for e in entries] for attr, entries in found.items()}

    def entries(self, tenant: str, device_id: str, query: HistoryQuery) -> Grouped:
        """The entries of :meth:`history`, before rendering (JSON or CSV)."""
        known = self._store.attrs(tenant, device_id)
        consistent = query.shape == SHAPE_CONSISTENT
        if not known and not consistent:
            raise DeviceNotFound(f"no history for device {device_id!r} yet", device_id=device_id)
        if len(query.attrs) == 1 and not consistent:
            (attr,) = query.attrs
            if attr not in known:
                raise AttrNotFound(
                    f"no history for attribute {attr!r} of device {device_id!r} yet", device_id=device_id, attr=attr
                )
            return self._entries(tenant, device_id, attr, query)
        attrs = query.attrs or tuple(known)
        return {attr: (self._entries(tenant, device_id, attr, query) if attr in known else []) for attr in attrs}

    def latest(self, tenant: str, device_id: str, attrs: tuple[str, ...] = ()) -> dict[str, Entry]:
        """The newest value of each attribute of the device (only ``attrs`` when given), keyed by attribute;
        404 when the device has no data at all."""
        found = self._store.latest(tenant, device_id)
        if not found:
            raise DeviceNotFound(f"no data for device {device_id!r} yet", device_id=device_id)
        by_attr = {e.attr: e for e in sorted(found, key=lambda e: e.attr)}
        if attrs:
            return {a: by_attr[a] for a in attrs if a in by_attr}
        return by_attr

    def _entries(self, tenant: str, device_id: str, attr: str, query: HistoryQuery) -> list[Entry]:
        return self._store.entries(
            tenant,
            device_id,
            attr,
            date_from_ms=query.date_from_ms,
            date_to_ms=query.date_to_ms,
            newest_first=query.newest_first,
            limit=query.limit(self._max),
        )
