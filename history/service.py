"""History's rules: which attributes to read, how many entries, when a device is unknown, and where a page that
the server's cap cut continues."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from history.models import (
    DEFAULT_NOTIFICATIONS,
    SHAPE_CONSISTENT,
    Cursor,
    DeviceNotFound,
    Entry,
    HistoryQuery,
    Json,
    NotificationEntry,
    NotificationQuery,
    Page,
)


class HistoryStore(Protocol):
    def device_exists(self, tenant: str, device_id: str) -> bool: ...

    def attrs(self, tenant: str, device_id: str, kind: str | None = None) -> list[str]: ...

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
        kind: str | None = None,
    ) -> list[Entry]: ...

    def latest(self, tenant: str, device_id: str) -> list[Entry]: ...

    def notifications(
        self,
        tenant: str,
        *,
        date_from_ms: int | None,
        date_to_ms: int | None,
        filters: tuple[tuple[str, Any], ...],
        limit: int,
    ) -> list[NotificationEntry]: ...

    def ping(self) -> bool: ...


class HistoryService:
    """``max_results``: the most entries per attribute one answer holds (``HISTORY_MAX_RESULTS``)."""

    def __init__(self, store: HistoryStore, max_results: int = 10_000) -> None:
        if max_results < 1:
            raise ValueError("max_results must be at least 1")
        self._store = store
        self._max = max_results

    def notifications(self, tenant: str, query: NotificationQuery) -> list[NotificationEntry]:
        """The tenant's notifications, newest first: at most ``limit`` (default: the last 10, or every one in the
        window when a date is given), never more than the server's cap."""
        windowed = query.date_from_ms is not None or query.date_to_ms is not None
        wanted = query.limit if query.limit is not None else (self._max if windowed else DEFAULT_NOTIFICATIONS)
        return self._store.notifications(
            tenant,
            date_from_ms=query.date_from_ms,
            date_to_ms=query.date_to_ms,
            filters=query.filters,
            limit=min(wanted, self._max),
        )

    def history(self, tenant: str, device_id: str, query: HistoryQuery) -> Json:
        """The JSON of :meth:`page`."""
        return self.page(tenant, device_id, query).to_json()

    def page(self, tenant: str, device_id: str, query: HistoryQuery) -> Page:
        """The entries of the query. dojot's shape: one requested attribute gives a list, several or none an
        object keyed by attribute; the consistent shape is always the object, its entries marked with their kind.

        A device that does not exist in the tenant is a 404 (:class:`DeviceNotFound`); an existing device
        without data, an attribute without data and an empty window are empty results in the same shape.

        Each attribute holds at most the server's cap. When the cap cut the answer (more entries match),
        the page says so and, when the rest can be fetched exactly, where the next page starts (see
        :meth:`_cut`)."""
        consistent = query.shape == SHAPE_CONSISTENT
        as_list = len(query.attrs) == 1 and not consistent
        attrs = query.attrs or tuple(self._store.attrs(tenant, device_id, query.kind))
        requested = query.count
        may_cut = requested is None or requested > self._max
        limit = self._max + 1 if may_cut else query.limit(self._max)
        found = {attr: self._fetch(tenant, device_id, attr, query, limit) for attr in attrs}
        if not any(found.values()) and not self._store.device_exists(tenant, device_id):
            raise DeviceNotFound(f"device {device_id!r} does not exist", device_id=device_id)
        page = Page(found, as_list=as_list, with_kind=consistent)
        cut = [attr for attr, entries in found.items() if len(entries) > self._max] if may_cut else []
        if not cut:
            return page
        if requested is not None and len(found) > 1:
            # Several attributes and a count above the cap: each attribute would need its own remaining count,
            # which one query string cannot carry. Say it was cut; no next page.
            return replace(page, entries={a: es[: self._max] for a, es in found.items()}, truncated=True)
        entries, cursor = self._cut(tenant, device_id, query, found, cut)
        if requested is not None:
            (delivered,) = (len(es) for es in entries.values())
            if delivered >= requested:  # only when one instant held more than the cap
                return replace(page, entries={a: es[:requested] for a, es in entries.items()})
            cursor = None if cursor is None else replace(cursor, delivered=delivered)
        # No cursor: the page took the boundary instant whole and the window ends there, so nothing is left.
        return replace(page, entries=entries, truncated=cursor is not None, next=cursor)

    def _cut(
        self, tenant: str, device_id: str, query: HistoryQuery, found: dict[str, list[Entry]], cut: list[str]
    ) -> tuple[dict[str, list[Entry]], Cursor | None]:
        """Cut every attribute at one instant, so one ``dateTo`` (newest first) or ``dateFrom`` (oldest first)
        continues them all with no gap and no repeat.

        ``found`` holds up to cap+1 entries per attribute; ``cut`` the attributes that had more than the cap.
        The boundary is the first instant left out of a cut attribute (the latest such instant newest first,
        the earliest oldest first); every attribute keeps only its entries strictly before the boundary, so
        entries of one instant are never split between pages, and the next page starts at the boundary,
        inclusive. If that leaves a cut attribute empty (more than the cap of its entries share the boundary
        instant) the page takes that whole instant instead and the next page starts one millisecond past it."""
        newest = query.newest_first
        param = "dateTo" if newest else "dateFrom"
        left_out = {attr: found[attr][self._max].ts_ms for attr in cut}
        boundary = max(left_out.values()) if newest else min(left_out.values())

        def before(e: Entry) -> bool:
            return e.ts_ms > boundary if newest else e.ts_ms < boundary

        entries = {attr: [e for e in es[: self._max] if before(e)] for attr, es in found.items()}
        stuck = [attr for attr in cut if left_out[attr] == boundary and not entries[attr]]
        if not stuck:
            return entries, Cursor(param, boundary)
        for attr, es in found.items():
            if attr in cut and left_out[attr] == boundary:
                same = self._store.entries(
                    tenant,
                    device_id,
                    attr,
                    date_from_ms=boundary,
                    date_to_ms=boundary,
                    newest_first=newest,
                    limit=0,
                    kind=query.kind,
                )
            else:
                same = [e for e in es if e.ts_ms == boundary]
            entries[attr] += same
        after = boundary - 1 if newest else boundary + 1
        end = query.date_from_ms if newest else query.date_to_ms
        if after < 0 or (end is not None and (after < end if newest else after > end)):
            return entries, None  # the window ends at the boundary: nothing is left
        return entries, Cursor(param, after)

    def latest(self, tenant: str, device_id: str, attrs: tuple[str, ...] = ()) -> dict[str, Entry]:
        """The newest reading of each attribute of the device (only ``attrs`` when given), keyed by attribute;
        empty for an existing device without readings, 404 for a device that does not exist."""
        found = self._store.latest(tenant, device_id)
        if not found and not self._store.device_exists(tenant, device_id):
            raise DeviceNotFound(f"device {device_id!r} does not exist", device_id=device_id)
        by_attr = {e.attr: e for e in sorted(found, key=lambda e: e.attr)}
        if attrs:
            return {a: by_attr[a] for a in attrs if a in by_attr}
        return by_attr

    def _fetch(self, tenant: str, device_id: str, attr: str, query: HistoryQuery, limit: int) -> list[Entry]:
        return self._store.entries(
            tenant,
            device_id,
            attr,
            date_from_ms=query.date_from_ms,
            date_to_ms=query.date_to_ms,
            newest_first=query.newest_first,
            limit=limit,
            kind=query.kind,
        )
