"""Request parsing and the attribute policy of the HTTP agent (pure functions)."""

import base64

import pytest

from agents.core.credentials_redis import check_password, hash_password
from agents.core.payload import DeviceRef, Drop
from agents.http.messages import (
    STATUS,
    Message,
    decode_json,
    depth,
    device_data,
    parse_batch,
    parse_credentials,
    parse_message,
)

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000
REF = DeviceRef("acme", "efac")
TYPES = {"temperature": "float", "count": "integer", "on": "bool", "name": "string"}


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "tenant", "device", "password"),
    [
        (basic("acme:efac:s3cret"), "acme", "efac", "s3cret"),
        (basic("acme:efac:pass:with:colons"), "acme", "efac", "pass:with:colons"),
        (basic("acme@efac:s3cret"), "acme", "efac", "s3cret"),  # dojot's username form
        ("basic " + base64.b64encode(b"acme:efac:x").decode(), "acme", "efac", "x"),
    ],
    ids=["identity", "colons-in-password", "dojot-at-form", "scheme-case"],
)
def test_basic_credentials_name_the_device(header, tenant, device, password):
    ref, pw = parse_credentials(header)
    assert (ref.tenant, ref.device_id, pw) == (tenant, device, password)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no_credentials"),
        ("", "no_credentials"),
        ("Bearer abc", "no_credentials"),
        ("Basic", "no_credentials"),
        ("Basic !!!notbase64", "no_credentials"),
        ("Basic " + base64.b64encode(b"\xff\xfe").decode(), "no_credentials"),
        (basic("acme"), "bad_identity"),
        (basic("acme:efac"), "bad_identity"),
        (basic("ACME:efac:pw"), "bad_identity"),
        (basic("acme:ef/ac:pw"), "bad_identity"),
        (basic("acme:efac:"), "bad_credentials"),
    ],
    ids=[
        "none",
        "empty",
        "bearer",
        "no-token",
        "not-base64",
        "not-utf8",
        "no-colon",
        "no-password-part",
        "bad-tenant",
        "bad-device-id",
        "empty-password",
    ],
)
def test_bad_credentials_are_refused_with_a_reason(header, reason):
    with pytest.raises(Drop) as exc:
        parse_credentials(header)
    assert exc.value.reason == reason
    assert STATUS[reason] == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not_json"),
        (b"   ", "not_json"),
        (b"{not json", "not_json"),
        (b'{"data": NaN}', "not_json"),
        (b"\xff\xfe", "not_utf8"),
        (b"[" * 5000 + b"]" * 5000, "too_deep"),
    ],
    ids=["empty", "blank", "garbage", "nan", "not-utf8", "recursion"],
)
def test_bodies_that_are_not_json(body, reason):
    with pytest.raises(Drop) as exc:
        decode_json(body)
    assert exc.value.reason == reason
    assert STATUS[reason] == 400


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([{"data": {}}], "not_object"),
        ("data", "not_object"),
        ({}, "missing_data"),
        ({"ts": 1}, "missing_data"),
        ({"data": [1, 2]}, "data_not_object"),
        ({"data": None}, "data_not_object"),
        ({"data": {}, "timestamp": 5}, "unknown_field"),
        ({"data": {"a": {"b": {"c": {"d": 1}}}}}, "too_deep"),
    ],
    ids=["array", "string", "empty", "ts-only", "data-array", "data-null", "unknown-field", "too-deep"],
)
def test_messages_that_are_refused(value, reason):
    with pytest.raises(Drop) as exc:
        parse_message(value, max_depth=3)
    assert exc.value.reason == reason


def test_a_message_at_the_depth_limit_is_accepted():
    assert parse_message({"data": {"a": {"b": {"c": 1}}}}, max_depth=3).data == {"a": {"b": {"c": 1}}}
    assert depth(1) == 0 and depth({}) == 1 and depth({"a": [{}]}) == 3


@pytest.mark.parametrize(
    ("value", "reason"),
    [({"data": {}}, "not_array"), ([], "empty_batch"), ([{"data": {}}] * 4, "too_many_items")],
    ids=["object", "empty", "too-many"],
)
def test_batches_that_are_refused(value, reason):
    with pytest.raises(Drop) as exc:
        parse_batch(value, max_items=3)
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (None, NOW),
        ("2021-06-16T09:32:01.683000Z", 1623835921683),
        (1623835921683, 1623835921683),
        (1623835921, 1623835921000),
        ("1623835921683", 1623835921683),
    ],
    ids=["absent", "iso", "epoch-ms", "epoch-s", "epoch-string"],
)
def test_ts_sets_the_device_data_timestamp(ts, expected):
    data, unknown = device_data(REF, Message({"temperature": 21.5}, ts), TYPES, NOW)
    assert data.metadata.timestamp == expected
    assert data.attrs == {"temperature": 21.5}
    assert unknown == []


def test_ts_wins_over_a_timestamp_inside_data_which_counts_otherwise():
    inner, outer = 1623835921000, 1623835922000
    data, _ = device_data(REF, Message({"temperature": 1, "timestamp": inner}, outer), TYPES, NOW)
    assert (data.metadata.timestamp, data.attrs) == (outer, {"temperature": 1})
    data, _ = device_data(REF, Message({"temperature": 1, "timestamp": inner}), TYPES, NOW)
    assert (data.metadata.timestamp, data.attrs) == (inner, {"temperature": 1})


def test_device_data_has_the_mqtt_agents_shape():
    data, unknown = device_data(REF, Message({"temperature": 1, "extra": "x"}), TYPES, NOW)
    assert data.model_dump(mode="json") == {
        "metadata": {"deviceid": "efac", "tenant": "acme", "timestamp": NOW},
        "attrs": {"temperature": 1, "extra": "x"},
    }
    assert unknown == ["extra"]


@pytest.mark.parametrize(
    ("data", "ts", "reason"),
    [
        ({"temperature": "hot"}, None, "wrong_type"),
        ({"count": 1.5}, None, "wrong_type"),
        ({"on": 1}, None, "wrong_type"),
        ({"temperature": 1}, "yesterday", "bad_timestamp"),
        ({"temperature": 1}, True, "bad_timestamp"),
        ({"temperature": 1}, -5, "bad_timestamp"),
    ],
    ids=["float-string", "integer-fraction", "bool-number", "ts-text", "ts-bool", "ts-negative"],
)
def test_the_attribute_policy_and_timestamps_refuse(data, ts, reason):
    with pytest.raises(Drop) as exc:
        device_data(REF, Message(data, ts), TYPES, NOW)
    assert exc.value.reason == reason
    assert STATUS[reason] == (422 if reason == "wrong_type" else 400)


def test_password_hashes_are_salted_and_verify_only_the_password():
    a, b = hash_password("s3cret", n=2**4), hash_password("s3cret", n=2**4)
    assert a != b and a.startswith("scrypt$16$")
    assert check_password("s3cret", a) and check_password("s3cret", b)
    assert not check_password("s3cret!", a)
    assert not check_password("s3cret", a.replace("scrypt", "bcrypt"))
    assert not check_password("s3cret", "garbage")
    assert not check_password("s3cret", "scrypt$16$8$1$!!$!!")
