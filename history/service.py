"""History's rules: which attributes to read, how many entries, and when there is no data."""

from __future__ import annotations

from typing import Any, Protocol

from history.models import AttrNotFound, DeviceNotFound, Entry, HistoryQuery

Json = list[dict[str, Any]] | dict[str, list[dict[str, Any]]]


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

    def ping(self) -> bool: ...


class HistoryService:
    def __init__(self, store: HistoryStore, max_results: int = 10_000) -> None:
        self._store = store
        self._max = max_results

    def history(self, tenant: str, device_id: str, query: HistoryQuery) -> Json:
        """One requested attribute: a list. Several or none: an object keyed by attribute."""
        known = self._store.attrs(tenant, device_id)
        if not known:
            raise DeviceNotFound(f"no history for device {device_id!r} yet", device_id=device_id)
        if len(query.attrs) == 1:
            (attr,) = query.attrs
            if attr not in known:
                raise AttrNotFound(
                    f"no history for attribute {attr!r} of device {device_id!r} yet", device_id=device_id, attr=attr
                )
            return [e.to_json() for e in self._entries(tenant, device_id, attr, query)]
        attrs = query.attrs or tuple(known)
        return {
            attr: ([e.to_json() for e in self._entries(tenant, device_id, attr, query)] if attr in known else [])
            for attr in attrs
        }

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
