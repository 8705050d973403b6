"""History as CSV (``Accept: text/csv``), in dojot's column layout.

Columns: ``attr``, ``value``, ``device_id``, ``ts``, with ``shape=consistent`` then ``kind`` (``reading`` or
``command``), then one ``metadata.<key>`` column per metadata key found in the rows (sorted). Text is quoted,
numbers are not; booleans are ``true``/``false``; objects and arrays are their JSON text; a missing metadata
value or a JSON null is an empty field. Rows keep the JSON order: one attribute after another, each newest
first (or oldest first with ``firstN``). No rows: an empty body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from history.models import Entry
from ondas.timestamps import to_iso

BASE_COLUMNS = ("attr", "value", "device_id", "ts")


class _Raw(str):
    """A field written without quotes (numbers and booleans)."""


def _field(value: Any) -> Any:
    if value is None:
        return _Raw("")
    if isinstance(value, bool):
        return _Raw("true" if value else "false")
    if isinstance(value, int | float):
        return _Raw(json.dumps(value))
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def to_csv(entries: Iterable[Entry], with_kind: bool = False) -> str:
    rows = list(entries)
    if not rows:
        return ""
    meta_keys = sorted({k for e in rows for k in e.metadata})
    kind_column = ("kind",) if with_kind else ()
    lines = [",".join(_quote(c) for c in (*BASE_COLUMNS, *kind_column, *(f"metadata.{k}" for k in meta_keys)))]
    for e in rows:
        kind = [e.kind] if with_kind else []
        fields = [e.attr, e.value, e.device_id, to_iso(e.ts_ms), *kind, *(e.metadata.get(k) for k in meta_keys)]
        lines.append(",".join(_quote(_field(f)) for f in fields))
    return "\r\n".join(lines) + "\r\n"


def _quote(value: Any) -> str:
    """Numbers and booleans bare; text always in double quotes with inner quotes doubled (RFC 4180)."""
    if isinstance(value, _Raw):
        return str(value)
    return '"' + str(value).replace('"', '""') + '"'
