import json

import pytest

from agents.core.payload import (
    DeviceRef,
    Drop,
    attribute_types,
    build_device_data,
    check_attrs,
    decode_attrs,
)
from agents.mqtt.topics import attrs_topic, config_topic, legacy_config_topic, parse_attrs_topic, topic_identity
from ondas.contracts import DeviceData

pytestmark = pytest.mark.unit

MAX = 1024
DEPTH = 32
NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("admin:efac/attrs", DeviceRef("admin", "efac")),
        ("t_1:0998/attrs", DeviceRef("t_1", "0998")),
        ("admin:dev-1.a_B/attrs", DeviceRef("admin", "dev-1.a_B")),
    ],
    ids=["dojot-sample", "digits", "punctuation"],
)
def test_attrs_topic_parses(topic, expected):
    assert parse_attrs_topic(topic) == expected
    assert attrs_topic(expected) == topic
    assert config_topic(expected) == topic.replace("/attrs", "/config")


@pytest.mark.parametrize(
    "topic",
    [
        "admin:efac/config",
        "admin:efac",
        "admin:efac/attrs/more",
        "efac/attrs",
        ":efac/attrs",
        "admin:/attrs",
        "Admin:efac/attrs",
        "dojot-management:efac/attrs",
        "admin:ef:ac/attrs",
        "admin:-efac/attrs",
        "admin:" + "x" * 129 + "/attrs",
        "admin:ef ac/attrs",
    ],
    ids=[
        "config-topic",
        "no-suffix",
        "extra-level",
        "no-tenant",
        "empty-tenant",
        "empty-device",
        "uppercase-tenant",
        "management-tenant",
        "colon-in-device",
        "leading-dash",
        "too-long-device",
        "space",
    ],
)
def test_attrs_topic_rejects(topic):
    with pytest.raises(Drop) as exc:
        parse_attrs_topic(topic)
    assert exc.value.reason == "bad_topic"


def test_mosca_era_topics_parse_to_the_same_device():
    ref = parse_attrs_topic("/admin/efac/attrs")
    assert ref == DeviceRef("admin", "efac") == parse_attrs_topic("admin:efac/attrs")
    assert legacy_config_topic(ref) == "/admin/efac/config"
    assert topic_identity("/admin/efac/attrs") == topic_identity("admin:efac/attrs") == "admin:efac"


@pytest.mark.parametrize(
    "topic",
    ["/admin/efac/config", "/admin/efac", "/admin/efac/attrs/x", "/admin/ef:ac/attrs", "/Admin/efac/attrs",
     "//efac/attrs", "/admin//attrs", "/dojot-management/efac/attrs", "/"],
)  # fmt: skip
def test_mosca_era_topics_are_judged_like_the_others(topic):
    with pytest.raises(Drop) as exc:
        parse_attrs_topic(topic)
    assert exc.value.reason == "bad_topic"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"temperature": 10.5, "pressure": 770}', {"temperature": 10.5, "pressure": 770}),
        (b"{}", {}),
        ('{"name": "são paulo"}'.encode(), {"name": "são paulo"}),
        (b'{"a": null, "b": [1, {"c": true}]}', {"a": None, "b": [1, {"c": True}]}),
        (b'  {"x": 1}\n', {"x": 1}),
    ],
    ids=["dojot-sample", "empty-object", "utf8", "nested", "whitespace"],
)
def test_decode_accepts(payload, expected):
    assert decode_attrs(payload, MAX, DEPTH) == expected


def _nested(levels: int) -> bytes:
    return ('{"a":' * levels + "1" + "}" * levels).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * (MAX + 1), "too_large"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"temperature=10", "not_json"),
        (b"", "not_json"),
        (b'{"a": NaN}', "not_json"),
        (b'{"a": Infinity}', "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (_nested(DEPTH + 1), "too_deep"),
        (b"[" * 200_000 + b"]" * 200_000, "too_deep"),
    ],
    ids=[
        "oversized",
        "not-utf8",
        "not-json",
        "empty",
        "nan",
        "infinity",
        "array",
        "string",
        "number",
        "null",
        "deeper-than-limit",
        "recursion-bomb",
    ],
)
def test_decode_rejects(payload, reason):
    limit = 1_000_000 if reason == "too_deep" else MAX
    with pytest.raises(Drop) as exc:
        decode_attrs(payload, limit, DEPTH)
    assert exc.value.reason == reason


def test_decode_accepts_exactly_the_limits():
    assert decode_attrs(_nested(DEPTH - 1), 10_000, DEPTH)
    payload = b'{"a":"' + b"x" * (MAX - 8) + b'"}'
    assert len(payload) == MAX
    assert decode_attrs(payload, MAX, DEPTH) == {"a": "x" * (MAX - 8)}


REF = DeviceRef("admin", "efac")


@pytest.mark.parametrize(
    ("attrs", "timestamp", "out_attrs"),
    [
        ({"humidity": 60}, NOW, {"humidity": 60}),
        ({"humidity": 60, "timestamp": 1528226137452}, 1528226137452, {"humidity": 60}),
        ({"humidity": 60, "timestamp": 1528226137}, 1528226137000, {"humidity": 60}),
        ({"humidity": 60, "timestamp": 1528226137.5}, 1528226137500, {"humidity": 60}),
        ({"humidity": 60, "timestamp": "2018-06-05T19:15:37.452Z"}, 1528226137452, {"humidity": 60}),
        ({"humidity": 60, "timestamp": "2018-06-05T16:15:37.452-03:00"}, 1528226137452, {"humidity": 60}),
        ({"humidity": 60, "timestamp": "1528226137452"}, 1528226137452, {"humidity": 60}),
        ({"timestamp": 1528226137452}, 1528226137452, {}),
    ],
    ids=["agent-time", "epoch-ms", "epoch-s", "epoch-s-fraction", "iso-z", "iso-offset", "epoch-string", "only-ts"],
)
def test_build_device_data(attrs, timestamp, out_attrs):
    data = build_device_data(REF, attrs, NOW)
    assert json.loads(data.to_bytes()) == {
        "metadata": {"deviceid": "efac", "tenant": "admin", "timestamp": timestamp},
        "attrs": out_attrs,
    }
    assert DeviceData.parse(data.to_bytes()) == data
    assert "timestamp" in attrs or attrs == out_attrs  # the input is left alone


@pytest.mark.parametrize(
    "timestamp",
    ["yesterday", "", -1, True, None, {"ms": 1}, [1]],
    ids=["words", "empty", "negative", "boolean", "null", "object", "array"],
)
def test_build_device_data_rejects_bad_timestamps(timestamp):
    with pytest.raises(Drop) as exc:
        build_device_data(REF, {"humidity": 60, "timestamp": timestamp}, NOW)
    assert exc.value.reason == "bad_timestamp"


TYPES = {
    "t": "float",
    "n": "integer",
    "b": "bool",
    "bb": "boolean",
    "s": "string",
    "g": "geo:point",
    "o": "object",
    "j": "json",
}


def test_attribute_types_from_a_device():
    device = {
        "id": "efac",
        "attrs": {
            "1": [{"label": "temperature", "value_type": "float"}, {"label": "x"}],
            "2": [{"label": "on", "value_type": "bool"}],
            "3": "junk",
        },
    }
    assert attribute_types(device) == {"temperature": "float", "on": "bool"}
    assert attribute_types({"id": "x"}) == {}


@pytest.mark.parametrize(
    "attrs",
    [
        {"t": 1},
        {"t": 1.5},
        {"n": 3},
        {"n": 3.0},
        {"b": True},
        {"bb": False},
        {"s": ""},
        {"g": "-22.81,-47.06"},
        {"g": " 1 , 2 "},
        {"o": {"a": 1}},
        {"j": [1]},
        {"j": None},
        {"timestamp": 1},
    ],
)
def test_check_attrs_accepts(attrs):
    assert check_attrs(attrs, TYPES) == []


@pytest.mark.parametrize(
    "attrs",
    [
        {"t": "1"},
        {"t": True},
        {"t": None},
        {"n": 1.5},
        {"n": False},
        {"b": 1},
        {"bb": "true"},
        {"s": 1},
        {"g": "here"},
        {"g": [1, 2]},
        {"o": [1]},
        {"t": 1, "s": 2},
    ],
)
def test_check_attrs_rejects(attrs):
    with pytest.raises(Drop) as exc:
        check_attrs(attrs, TYPES)
    assert exc.value.reason == "wrong_type"


def test_check_attrs_reports_unknown_keys():
    assert check_attrs({"t": 1, "extra": "x", "more": None}, TYPES) == ["extra", "more"]
    assert check_attrs({"anything": 1}, {"x": "no-such-type"}) == ["anything"]
