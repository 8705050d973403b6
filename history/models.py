"""Domain types of history: the query, one history entry and the dojot "not found" errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ondas.errors import NotFound
from ondas.timestamps import to_iso

#: Response shapes: dojot's (a list for one attribute, an object for several; 404 when there is no data) and
#: the consistent one (always an object keyed by attribute, empty lists or an empty object when there is no data).
SHAPE_DOJOT = "dojot"
SHAPE_CONSISTENT = "consistent"
SHAPES = (SHAPE_DOJOT, SHAPE_CONSISTENT)


@dataclass(frozen=True)
class HistoryQuery:
    """``attrs`` empty means every attribute of the device. Times are epoch ms, both ends inclusive."""

    attrs: tuple[str, ...] = ()
    shape: str = SHAPE_DOJOT
    last_n: int | None = None
    first_n: int | None = None
    h_limit: int | None = None
    date_from_ms: int | None = None
    date_to_ms: int | None = None

    @property
    def newest_first(self) -> bool:
        return self.first_n is None

    def limit(self, max_results: int) -> int:
        """Entries per attribute: the smallest of lastN/firstN, hLimit and the server's cap."""
        given = [n for n in (self.last_n, self.first_n, self.h_limit) if n is not None]
        return min([*given, max_results])


@dataclass(frozen=True)
class Entry:
    device_id: str
    attr: str
    value: Any
    ts_ms: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """dojot's shape; ``metadata`` only when the message carried extra metadata."""
        out: dict[str, Any] = {"device_id": self.device_id, "ts": to_iso(self.ts_ms)}
        if self.metadata:
            out["metadata"] = self.metadata
        out["value"] = self.value
        out["attr"] = self.attr
        return out


class _DojotNotFound(NotFound):
    title = "Not found"
    description = ""

    def to_dict(self) -> dict[str, Any]:
        # Our error shape plus dojot's title/description, so dojot clients keep working.
        return {**super().to_dict(), "title": self.title, "description": self.description}


class DeviceNotFound(_DojotNotFound):
    title = "Device not found"
    description = "No data for the given device could be found"


class AttrNotFound(_DojotNotFound):
    title = "Attr not found"
    description = "No data for the given attribute could be found"
