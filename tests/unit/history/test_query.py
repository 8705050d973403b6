from __future__ import annotations

import pytest

from history.api import parse_attrs, parse_date
from history.models import Entry, HistoryQuery
from ondas.errors import Invalid

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([], (), id="none"),
        pytest.param(["temperature"], ("temperature",), id="one"),
        pytest.param(["temperature,pressure"], ("temperature", "pressure"), id="comma"),
        pytest.param(["temperature", "pressure"], ("temperature", "pressure"), id="repeated"),
        pytest.param(["a, b", "b", " c ,", ""], ("a", "b", "c"), id="blanks-and-duplicates"),
    ],
)
def test_parse_attrs(values: list[str], expected: tuple[str, ...]) -> None:
    assert parse_attrs(values) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("2018-06-05T18:00:00Z", 1528221600000, id="utc"),
        pytest.param("2018-06-05T18:00:00", 1528221600000, id="naive-is-utc"),
        pytest.param("2018-06-05T15:00:00-03:00", 1528221600000, id="offset"),
        pytest.param("2018-06-05T18:00:00 00:00", 1528221600000, id="unencoded-plus"),
        pytest.param("2018-06-05T18:00:00.250Z", 1528221600250, id="millis"),
    ],
)
def test_parse_date(raw: str | None, expected: int | None) -> None:
    assert parse_date("dateFrom", raw) == expected


@pytest.mark.parametrize("raw", ["yesterday", "2018-13-45T00:00:00Z", "true"])
def test_parse_date_rejects_garbage(raw: str) -> None:
    with pytest.raises(Invalid, match="dateFrom must be an ISO 8601 date"):
        parse_date("dateFrom", raw)


@pytest.mark.parametrize(
    ("query", "cap", "expected"),
    [
        pytest.param(HistoryQuery(), 100, 100, id="server-cap"),
        pytest.param(HistoryQuery(last_n=3), 100, 3, id="lastN"),
        pytest.param(HistoryQuery(first_n=5, h_limit=2), 100, 2, id="hLimit-smaller"),
        pytest.param(HistoryQuery(last_n=500), 100, 100, id="capped"),
    ],
)
def test_limit(query: HistoryQuery, cap: int, expected: int) -> None:
    assert query.limit(cap) == expected


def test_order() -> None:
    assert HistoryQuery().newest_first
    assert HistoryQuery(last_n=1).newest_first
    assert not HistoryQuery(first_n=1).newest_first


def test_entry_json_is_dojots_shape() -> None:
    e = Entry("3bb9", "temperature", 29.76, 1521726427050)
    assert e.to_json() == {
        "device_id": "3bb9",
        "ts": "2018-03-22T13:47:07.050000Z",
        "value": 29.76,
        "attr": "temperature",
    }
    assert list(e.to_json()) == ["device_id", "ts", "value", "attr"]
    with_meta = Entry("3bb9", "t", 1, 0, {"protocol": "mqtt"}).to_json()
    assert list(with_meta) == ["device_id", "ts", "metadata", "value", "attr"]
