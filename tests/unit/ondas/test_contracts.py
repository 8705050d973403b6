import json
from datetime import UTC, datetime

import pytest

from ondas.contracts import ContractError, DeviceData, DeviceEvent, TenancyEvent
from ondas.timestamps import parse_timestamp, to_iso

pytestmark = pytest.mark.unit

INSTANT_MS = 1528226137452  # 2018-06-05T19:15:37.452Z


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (INSTANT_MS, INSTANT_MS),
        (INSTANT_MS / 1000, INSTANT_MS),
        (1528226137, 1528226137000),
        ("1528226137452", INSTANT_MS),
        ("2018-06-05T19:15:37.452Z", INSTANT_MS),
        ("2018-06-05T19:15:37.452+00:00", INSTANT_MS),
        ("2018-06-05T16:15:37.452-03:00", INSTANT_MS),
        ("2018-06-05T19:15:37.452", INSTANT_MS),
    ],
    ids=["epoch-ms", "epoch-s-float", "epoch-s", "epoch-ms-string", "iso-z", "iso-utc", "iso-offset", "iso-naive"],
)
def test_timestamps_land_at_the_same_instant(raw, expected):
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize("bad", [True, -1, float("nan"), "yesterday", "", None, [1], 1e18, "253402300800000"], ids=repr)
def test_bad_timestamps_are_refused(bad):
    with pytest.raises(ValueError):
        parse_timestamp(bad)


def test_iso_rendering_matches_dojot_history():
    assert to_iso(1521726427050) == "2018-03-22T13:47:07.050000Z"
    assert datetime.fromisoformat(to_iso(INSTANT_MS).replace("Z", "+00:00")) == datetime.fromtimestamp(
        INSTANT_MS / 1000, UTC
    )


def test_device_data_shape_of_the_seed():
    raw = {"metadata": {"deviceid": "c6ea4b", "tenant": "admin", "timestamp": INSTANT_MS}, "attrs": {"humidity": 60}}
    msg = DeviceData.parse(json.dumps(raw).encode())
    assert msg.metadata.deviceid == "c6ea4b"
    assert json.loads(msg.to_bytes()) == raw


def test_device_data_normalises_iso_timestamps_to_ms():
    raw = {"metadata": {"deviceid": "d", "tenant": "admin", "timestamp": "2018-06-05T19:15:37.452Z"}, "attrs": {}}
    assert DeviceData.parse(raw).metadata.timestamp == INSTANT_MS


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"attrs": {}}', "metadata"),
        (b'{"metadata": {"deviceid": "d", "tenant": "BAD", "timestamp": 1}, "attrs": {}}', "tenant"),
        (b'{"metadata": {"deviceid": "d", "tenant": "a", "timestamp": "soon"}, "attrs": {}}', "timestamp"),
        (b'{"metadata": {"deviceid": "d", "tenant": "a", "timestamp": 1}, "attrs": [1]}', "attrs"),
    ],
    ids=["non-json", "array", "no-metadata", "bad-tenant", "bad-timestamp", "attrs-not-object"],
)
def test_malformed_device_data_says_what_is_wrong(raw, fragment):
    with pytest.raises(ContractError, match=fragment):
        DeviceData.parse(raw)


def test_device_events_have_dojot_shapes():
    device = {"id": "efac", "label": "Device 1", "templates": [1], "attrs": {"1": []}, "created": "x"}
    assert json.loads(DeviceEvent.created("admin", device).to_bytes()) == {
        "event": "create",
        "meta": {"service": "admin"},
        "data": device,
    }
    assert json.loads(DeviceEvent.removed("admin", "efac").to_bytes()) == {
        "event": "remove",
        "meta": {"service": "admin"},
        "data": {"id": "efac"},
    }
    configure = DeviceEvent.configure("admin", "efac", {"fan": 100}, 1528226137452)
    assert json.loads(configure.to_bytes()) == {
        "event": "configure",
        "meta": {"service": "admin", "timestamp": 1528226137452},
        "data": {"id": "efac", "attrs": {"fan": 100}},
    }
    parsed = DeviceEvent.parse(configure.to_bytes())
    assert (parsed.tenant, parsed.device_id) == ("admin", "efac")


@pytest.mark.parametrize(
    "raw",
    [
        {"event": "explode", "meta": {"service": "admin"}, "data": {"id": "x"}},
        {"event": "remove", "meta": {"service": "admin"}, "data": {}},
        {"event": "configure", "meta": {"service": "admin"}, "data": {"id": "x"}},
    ],
    ids=["unknown-event", "no-id", "configure-without-attrs"],
)
def test_malformed_device_events_are_refused(raw):
    with pytest.raises(ContractError):
        DeviceEvent.parse(raw)


def test_tenancy_event():
    assert TenancyEvent.parse(b'{"type": "CREATE", "tenant": "new_tenant"}').tenant == "new_tenant"
    with pytest.raises(ContractError):
        TenancyEvent.parse(b'{"type": "RENAME", "tenant": "x"}')
