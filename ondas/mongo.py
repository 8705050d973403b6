"""The platform's MongoDB client settings, in one place: aware UTC datetimes and bounded waits, so an
unreachable store fails fast (and is retried by the caller) instead of hanging a request or a batch."""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

Doc = dict[str, Any]


def connect(url: str, timeout_ms: int = 5000) -> MongoClient[Doc]:
    return MongoClient(url, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)


def ping(client: MongoClient[Doc]) -> bool:
    """True when the server answers; for readiness checks."""
    try:
        return bool(client.admin.command("ping").get("ok"))
    except PyMongoError:
        return False
