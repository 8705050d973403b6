"""ondas.timestamps: ISO 8601 and epoch values to epoch milliseconds and back, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ondas.timestamps import MAX_MS, parse_timestamp, to_iso

pytestmark = pytest.mark.unit


def test_every_millisecond_iso_string_parses_exactly() -> None:
    # A float of seconds times 1000 comes out 1 ms low for some of these (e.g. 2004-03-15T07:55:47.472Z).
    start = datetime(2004, 3, 15, 7, 55, 47, tzinfo=UTC)
    for ms in range(0, 5000, 1):
        t = start + timedelta(milliseconds=ms)
        text = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        expected = int((t - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
        assert parse_timestamp(text) == expected, text


def test_the_example_that_was_1_ms_low() -> None:
    assert parse_timestamp("2004-03-15T07:55:47.472Z") % 1000 == 472


def test_round_trip_through_iso() -> None:
    for ms in (0, 1, 1521726427050, 1079337347472, MAX_MS):
        assert parse_timestamp(to_iso(ms)) == ms
    assert to_iso(1521726427050) == "2018-03-22T13:47:07.050000Z"


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (1521726427, 1521726427000),
        (1521726427.05, 1521726427050),
        (1521726427050, 1521726427050),
        ("1521726427", 1521726427000),
    ],
)
def test_epoch_seconds_and_milliseconds(value: object, ms: int) -> None:
    assert parse_timestamp(value) == ms


@pytest.mark.parametrize("value", [True, -1, float("nan"), "", "yesterday", None])
def test_bad_values_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)
