"""HTTP of history: parse the query string, call the service, render JSON. No business rules here."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Blueprint, Response, current_app, jsonify, request

from history.models import HistoryQuery
from history.service import HistoryService
from ondas.errors import Invalid
from ondas.timestamps import parse_timestamp
from ondas.web import int_arg, principal

bp = Blueprint("history", __name__)


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
    query = HistoryQuery(
        attrs=parse_attrs(request.args.getlist("attr")),
        last_n=last_n,
        first_n=first_n,
        h_limit=int_arg("hLimit", minimum=1),
        date_from_ms=parse_date("dateFrom", request.args.get("dateFrom")),
        date_to_ms=parse_date("dateTo", request.args.get("dateTo")),
    )
    if query.date_from_ms is not None and query.date_to_ms is not None and query.date_from_ms > query.date_to_ms:
        raise Invalid("dateFrom must not be later than dateTo")
    return query


@bp.get("/device/<device_id>/history")
def device_history(device_id: str) -> Response:
    tenant = principal().tenant
    query = parse_query()
    service: HistoryService = current_app.extensions["history_service"]
    return jsonify(service.history(tenant, device_id, query))
