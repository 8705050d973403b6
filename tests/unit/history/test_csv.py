from __future__ import annotations

import csv
import io

import pytest

from history.csv_render import to_csv
from history.models import Entry

pytestmark = pytest.mark.unit


def test_dojot_columns_with_flattened_metadata() -> None:
    rows = [
        Entry("b374a5", "temperature", 22.12, 1518615813306, {"protocol": "mqtt", "payload": "json"}),
        Entry("b374a5", "temperature", "23.12", 1518615753306, {"protocol": "mqtt"}),
    ]
    assert to_csv(rows).splitlines() == [
        '"attr","value","device_id","ts","metadata.payload","metadata.protocol"',
        '"temperature",22.12,"b374a5","2018-02-14T13:43:33.306000Z","json","mqtt"',
        '"temperature","23.12","b374a5","2018-02-14T13:42:33.306000Z",,"mqtt"',
    ]


def test_values_of_every_json_type_round_trip_through_a_csv_reader() -> None:
    values = [True, False, None, 0, -1.5, "", 'say "hi", bye', {"lat": -22.8, "lng": -47.0}, [1, 2]]
    text = to_csv([Entry("d", "a", v, 0) for v in values])
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["attr", "value", "device_id", "ts"]
    assert [row[1] for row in parsed[1:]] == [
        "true", "false", "", "0", "-1.5", "", 'say "hi", bye', '{"lat":-22.8,"lng":-47.0}', "[1,2]",
    ]  # fmt: skip
    assert text.count("\r\n") == len(values) + 1


def test_no_rows_is_an_empty_body() -> None:
    assert to_csv([]) == ""


def test_consistent_shape_adds_the_kind_column() -> None:
    rows = [Entry("d", "fan", 100, 0, {"event": "configure"}, "command"), Entry("d", "fan", 10, 0)]
    assert to_csv(rows, with_kind=True).splitlines() == [
        '"attr","value","device_id","ts","kind","metadata.event"',
        '"fan",100,"d","1970-01-01T00:00:00.000000Z","command","configure"',
        '"fan",10,"d","1970-01-01T00:00:00.000000Z","reading",',
    ]
