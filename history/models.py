"""Domain types of history: the query, one history entry, one page of results, dojot's "not found" error, and
the notifications query and entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ondas.errors import NotFound
from ondas.timestamps import to_iso

#: Response shapes: dojot's (a list for one attribute, an object for several or none) and the consistent one
#: (always an object keyed by attribute, each entry marked with its kind).
SHAPE_DOJOT = "dojot"
SHAPE_CONSISTENT = "consistent"
SHAPES = (SHAPE_DOJOT, SHAPE_CONSISTENT)

#: Kinds of entries: a value the device reported, or a value sent to it (a ``configure`` event, an actuation).
#: ``kind=all`` (or no ``kind``) asks for both.
KIND_READING = "reading"
KIND_COMMAND = "command"
KIND_ALL = "all"
KINDS = (KIND_READING, KIND_COMMAND, KIND_ALL)

#: Notifications answered when neither ``limit`` nor a time window is given (dojot's default).
DEFAULT_NOTIFICATIONS = 10
#: Query parameters of ``/notifications/history`` that are not filters.
NOTIFICATION_PARAMS = ("limit", "dateFrom", "dateTo")

#: Query parameters that are counts per attribute (a next page lowers them by what was already returned).
COUNT_PARAMS = ("lastN", "firstN", "hLimit")


@dataclass(frozen=True)
class HistoryQuery:
    """``attrs`` empty means every attribute of the device. Times are epoch ms, both ends inclusive. ``kind``
    ``None`` means readings and commands."""

    attrs: tuple[str, ...] = ()
    shape: str = SHAPE_DOJOT
    last_n: int | None = None
    first_n: int | None = None
    h_limit: int | None = None
    date_from_ms: int | None = None
    date_to_ms: int | None = None
    kind: str | None = None

    @property
    def newest_first(self) -> bool:
        return self.first_n is None

    @property
    def count(self) -> int | None:
        """The entries per attribute the client asked for (the smallest of lastN/firstN and hLimit), if any."""
        given = [n for n in (self.last_n, self.first_n, self.h_limit) if n is not None]
        return min(given) if given else None

    def limit(self, max_results: int) -> int:
        """Entries per attribute: the smallest of lastN/firstN, hLimit and the server's cap."""
        count = self.count
        return max_results if count is None else min(count, max_results)


@dataclass(frozen=True)
class Entry:
    device_id: str
    attr: str
    value: Any
    ts_ms: int
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = KIND_READING

    def to_json(self, with_kind: bool = False) -> dict[str, Any]:
        """dojot's shape; ``metadata`` only when the message carried extra metadata; ``kind`` when asked (the
        consistent shape)."""
        out: dict[str, Any] = {"device_id": self.device_id, "ts": to_iso(self.ts_ms)}
        if self.metadata:
            out["metadata"] = self.metadata
        out["value"] = self.value
        out["attr"] = self.attr
        if with_kind:
            out["kind"] = self.kind
        return out


Json = list[dict[str, Any]] | dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: the query with ``param`` (``dateTo`` newest first, ``dateFrom`` oldest first)
    set to ``ms`` (epoch ms, inclusive) and every count parameter lowered by ``delivered``."""

    param: str
    ms: int
    delivered: int = 0


@dataclass(frozen=True)
class Page:
    """The entries of one answer, keyed by attribute in the answer's order. ``as_list``: dojot's shape for one
    requested attribute (a list). ``truncated``: the server's cap cut at least one attribute; ``next`` (when
    given) is where the rest starts."""

    entries: dict[str, list[Entry]]
    as_list: bool = False
    with_kind: bool = False
    truncated: bool = False
    next: Cursor | None = None

    def rows(self) -> list[Entry]:
        return [e for entries in self.entries.values() for e in entries]

    def to_json(self) -> Json:
        if self.as_list:
            return [e.to_json(self.with_kind) for e in self.rows()]
        return {attr: [e.to_json(self.with_kind) for e in entries] for attr, entries in self.entries.items()}


class DeviceNotFound(NotFound):
    """The device does not exist in the caller's tenant (dojot's title, so dojot clients keep working)."""

    title = "Device not found"
    description = "No device with the given id exists in this tenant"

    def to_dict(self) -> dict[str, Any]:
        # Our error shape plus dojot's title/description.
        return {**super().to_dict(), "title": self.title, "description": self.description}


@dataclass(frozen=True)
class NotificationQuery:
    """``limit`` None: the last :data:`DEFAULT_NOTIFICATIONS`, or every one in the window when a date is given.
    ``filters``: (field, value) pairs a notification must all match (``msgID``, ``message``, ``subject``, or a
    key of its ``metaAttrsFilter``)."""

    limit: int | None = None
    date_from_ms: int | None = None
    date_to_ms: int | None = None
    filters: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class NotificationEntry:
    msg_id: str
    ts_ms: int
    message: str
    meta: dict[str, Any]
    subject: str

    def to_json(self) -> dict[str, Any]:
        """dojot's shape: ``msgID``, ``metaAttrsFilter``, ``message``, ``subject``, ``ts`` (ISO, UTC)."""
        return {
            "msgID": self.msg_id,
            "metaAttrsFilter": self.meta,
            "message": self.message,
            "subject": self.subject,
            "ts": to_iso(self.ts_ms),
        }
