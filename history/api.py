"""HTTP of history: parse the query string, call the service (injected: :func:`blueprint`), render JSON or CSV.
No business rules here."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from history.csv_render import to_csv
from history.models import (
    COUNT_PARAMS,
    KIND_ALL,
    KINDS,
    NOTIFICATION_PARAMS,
    SHAPE_DOJOT,
    SHAPES,
    Cursor,
    HistoryQuery,
    NotificationQuery,
    Page,
)
from history.service import HistoryService
from ondas.errors import Invalid
from ondas.timestamps import parse_timestamp
from ondas.web import int_arg, principal


def parse_attrs(values: Iterable[str]) -> tuple[str, ...]:
    """``attr`` may be repeated and comma-separated; blanks are dropped and duplicates kept once, in order."""
    seen: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if name:
                seen.setdefault(name, None)
    return tuple(seen)


def parse_date(name: str, raw: str | None) -> int | None:
    """An ISO 8601 date (a time zone is optional, UTC by default) as epoch ms; 400 when malformed."""
    if raw is None or raw.strip() == "":
        return None
    # An unencoded '+' of a UTC offset arrives as a space.
    text = raw.strip().replace(" ", "+") if "T" in raw else raw.strip()
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise Invalid(
            f"query parameter {name} must be an ISO 8601 date such as 2018-06-05T18:00:00Z, got {raw!r}"
        ) from exc


def parse_query() -> HistoryQuery:
    last_n = int_arg("lastN", minimum=1)
    first_n = int_arg("firstN", minimum=1)
    if last_n is not None and first_n is not None:
        raise Invalid("use either lastN or firstN, not both")
    shape = request.args.get("shape", SHAPE_DOJOT) or SHAPE_DOJOT
    if shape not in SHAPES:
        raise Invalid(f"query parameter shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    kind = request.args.get("kind", KIND_ALL) or KIND_ALL
    if kind not in KINDS:
        raise Invalid(f"query parameter kind must be one of {', '.join(KINDS)}, got {kind!r}")
    query = HistoryQuery(
        attrs=parse_attrs(request.args.getlist("attr")),
        shape=shape,
        last_n=last_n,
        first_n=first_n,
        h_limit=int_arg("hLimit", minimum=1),
        date_from_ms=parse_date("dateFrom", request.args.get("dateFrom")),
        date_to_ms=parse_date("dateTo", request.args.get("dateTo")),
        kind=None if kind == KIND_ALL else kind,
    )
    if query.date_from_ms is not None and query.date_to_ms is not None and query.date_from_ms > query.date_to_ms:
        raise Invalid("dateFrom must not be later than dateTo")
    return query


_FILTER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def filter_value(raw: str) -> Any:
    """dojot's filter values: ``"text"`` (in double quotes) is a string, an integer or a number is that number,
    ``true``/``false`` a boolean; anything else is the text as given."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


def parse_notification_query() -> NotificationQuery:
    filters: dict[str, Any] = {}
    for name, raw in request.args.items(multi=True):
        if name in NOTIFICATION_PARAMS:
            continue
        if not _FILTER_NAME.fullmatch(name):
            raise Invalid(f"filter {name[:80]!r}: a filter names a field with letters, digits, '_' or '-'")
        filters[name] = filter_value(raw)
    query = NotificationQuery(
        limit=int_arg("limit", minimum=1),
        date_from_ms=parse_date("dateFrom", request.args.get("dateFrom")),
        date_to_ms=parse_date("dateTo", request.args.get("dateTo")),
        filters=tuple(filters.items()),
    )
    if query.date_from_ms is not None and query.date_to_ms is not None and query.date_from_ms > query.date_to_ms:
        raise Invalid("dateFrom must not be later than dateTo")
    return query


def wants_csv() -> bool:
    """``Accept: text/csv`` (preferred over JSON) asks for CSV; anything else, or no Accept, gets JSON."""
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"], default="application/json")
    return best == "text/csv" and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]


def next_link(query: HistoryQuery, cursor: Cursor) -> str:
    """The ``Link`` of the next page: this request's query string with the cursor's date (epoch ms, which
    dateFrom/dateTo accept and which parses exactly) and the counts lowered by what this page returned. A
    relative reference (``?...``), so it resolves against the URL the client called, gateway prefix included."""
    counts = {"lastN": query.last_n, "firstN": query.first_n, "hLimit": query.h_limit}
    pairs = [(k, v) for k, v in request.args.items(multi=True) if k != cursor.param and k not in COUNT_PARAMS]
    pairs += [(k, str(n - cursor.delivered)) for k, n in counts.items() if n is not None]
    pairs.append((cursor.param, str(cursor.ms)))
    return f'<?{urlencode(pairs)}>; rel="next"'


def paging_headers(query: HistoryQuery, page: Page) -> dict[str, str]:
    headers: dict[str, str] = {}
    if page.truncated:
        headers["X-Ondas-Truncated"] = "true"
    if page.next is not None:
        headers["Link"] = next_link(query, page.next)
    return headers


def blueprint(service: HistoryService) -> Blueprint:
    """The routes of history, calling ``service``."""
    bp = Blueprint("history", __name__)

    @bp.get("/device/<device_id>/history")
    def device_history(device_id: str) -> Response:
        tenant = principal().tenant
        query = parse_query()
        page = service.page(tenant, device_id, query)
        headers = paging_headers(query, page)
        if wants_csv():
            body = to_csv(page.rows(), with_kind=page.with_kind)
            return Response(body, content_type="text/csv; charset=utf-8", headers=headers)
        resp = jsonify(page.to_json())
        resp.headers.update(headers)
        return resp

    @bp.get("/device/<device_id>/latest")
    def device_latest(device_id: str) -> Response:
        """The newest reading of each attribute, keyed by attribute (the entries are history's); ``{}`` for an
        existing device without readings, 404 for a device that does not exist."""
        tenant = principal().tenant
        latest = service.latest(tenant, device_id, parse_attrs(request.args.getlist("attr")))
        if wants_csv():
            return Response(to_csv(latest.values()), content_type="text/csv; charset=utf-8")
        return jsonify({attr: e.to_json() for attr, e in latest.items()})

    @bp.get("/notifications/history")
    def notifications() -> Response:
        """The tenant's stored notifications, newest first (dojot's history ``/notifications/history``)."""
        tenant = principal().tenant
        found = service.notifications(tenant, parse_notification_query())
        return jsonify({"notifications": [n.to_json() for n in found]})

    return bp
