"""Device timestamps: ISO 8601 or epoch (milliseconds or seconds). The platform carries epoch ms."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

# Epoch values below this are seconds (1e11 s is the year 5138; 1e11 ms is 1973).
_SECONDS_LIMIT = 100_000_000_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

#: 9999-12-31T23:59:59.999Z, the last instant ISO 8601 (and history's rendering) can express.
MAX_MS = 253_402_300_799_999


def parse_timestamp(value: object) -> int:
    """Return epoch milliseconds for an ISO 8601 string or an epoch number in seconds or milliseconds.

    Raises ValueError with a message fit for a client when the value is none of these.
    """
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO 8601 or epoch seconds/milliseconds, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("timestamp must be a finite, non-negative epoch value")
        ms = round(value * 1000) if value < _SECONDS_LIMIT else int(value)
        if ms > MAX_MS:
            raise ValueError(f"timestamp {value!r} is after the year 9999")
        return ms
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("timestamp is empty")
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return parse_timestamp(number)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"timestamp {value!r} is not ISO 8601 nor an epoch number") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return (parsed - _EPOCH) // _MS  # exact: a float of seconds times 1000 can come out 1 ms low
    raise ValueError("timestamp must be ISO 8601 or epoch seconds/milliseconds")


def to_iso(ms: int) -> str:
    """Render epoch ms the way dojot's history does: ``2018-03-22T13:47:07.050000Z``."""
    return (_EPOCH + ms * _MS).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
