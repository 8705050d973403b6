"""kafka_ws's filter grammars and ticket payloads: the reference's examples, and every error's close code."""

from __future__ import annotations

from typing import Any

import pytest

from kafka_ws.models import (
    CloseCode,
    CloseError,
    Filter,
    TicketPayload,
    apply_fields,
    is_ticket,
    parse_fields,
    parse_where,
    sign_payload,
    verify_payload,
)

pytestmark = pytest.mark.unit

MSG = {"attrs": {"temperature": 20, "rain": 10.5}, "metadata": {"tenant": "admin"}}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("attrs,metadata", MSG),
        ("metadata/tenant", {"metadata": {"tenant": "admin"}}),
        ("attrs(temperature,rain)", {"attrs": {"temperature": 20, "rain": 10.5}}),
        ("attrs/*", {"attrs": {"temperature": 20, "rain": 10.5}}),
        ("attrs/humidity", {"attrs": {}}),
        ("attrs(temperature)", {"attrs": {"temperature": 20}}),
        ("attrs/temperature,metadata", {"attrs": {"temperature": 20}, "metadata": {"tenant": "admin"}}),
        (" attrs / rain ", {"attrs": {"rain": 10.5}}),
        ("missing", {}),
    ],
)
def test_fields_reference_examples(fields: str, expected: Any) -> None:
    assert apply_fields(MSG, parse_fields(fields)) == expected


def test_fields_wildcard_in_the_middle_and_lists() -> None:
    msg = {"sensors": {"a": {"t": 1, "h": 2}, "b": {"t": 3, "x": 4}}, "l": [{"k": 1, "j": 2}, {"k": 3}]}
    assert apply_fields(msg, parse_fields("sensors/*/t")) == {"sensors": {"a": {"t": 1}, "b": {"t": 3}}}
    assert apply_fields(msg, parse_fields("l/k")) == {"l": [{"k": 1}, {"k": 3}]}
    assert parse_fields("") is None


@pytest.mark.parametrize("fields", ["a,", "a/", "a(b", "(b)", "a)b", ",a"])
def test_fields_syntax_errors_are_4000(fields: str) -> None:
    with pytest.raises(CloseError) as err:
        parse_fields(fields)
    assert err.value.code == CloseCode.INVALID_SYNTAX


@pytest.mark.parametrize(
    ("where", "message", "kept"),
    [
        ("a=in:bar,baz;", {"a": "foo", "b": "bar"}, False),
        ("b=in:ar;", {"a": "foo", "b": "bar"}, True),
        ("a=nin:bar,baz;", {"a": "foo", "b": "bar"}, True),
        ("b=nin:ar;", {"a": "foo", "b": "bar"}, False),
        ("rain=10;", {"rain": 10, "temperature": 30.0}, True),
        ("rain=eq:11;", {"rain": 10}, False),
        ("rain=neq:11;", {"rain": 10}, True),
        ("rain=gt:10;", {"rain": 10}, False),
        ("rain=gte:10;", {"rain": 10}, True),
        ("rain=lt:10;", {"rain": 10}, False),
        ("rain=lte:10;", {"rain": 10}, True),
        ("sensors.rain.enabled=bool:true;", {"sensors": {"rain": {"enabled": True}}}, True),
        ("sensors.rain.enabled=bool:false;", {"sensors": {"rain": {"enabled": True}}}, False),
        ("sensors.rain.enabled=bool:false;", {"sensors": {"rain": {"enabled": False}}}, True),
        ("temperature=gte:5.0;temperature=lt:10.0;", {"temperature": 7}, True),
        ("temperature=gte:5.0;temperature=lt:10.0;", {"temperature": 10}, False),
        ("rain=gt:1;", {"other": 1}, False),
        ("rain=gt:1;", {"rain": "not a number"}, False),
        ("a\\.b=in:x\\,y;", {"a.b": "1x,y2"}, True),
        ("attrs. brake signal 1 =gte:0.0;", {"attrs": {"brake signal 1": 0}}, True),
    ],
)
def test_where_reference_examples(where: str, message: Any, kept: bool) -> None:
    assert (Filter.parse(where=where).apply(message) is not None) is kept


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("a=1", CloseCode.INVALID_SYNTAX),
        ("a;", CloseCode.INVALID_SYNTAX),
        ("=1;", CloseCode.INVALID_SYNTAX),
        ("a=;", CloseCode.INVALID_SYNTAX),
        ("a=1;;", CloseCode.INVALID_SYNTAX),
        ("a=like:1;", CloseCode.INVALID_OPERATOR),
        ("a=in:x\\y;", CloseCode.INVALID_ESCAPE_VALUE),
        ("a=gt:1,2;", CloseCode.INVALID_OPERATOR_ARITY),
        ("a=bool:true,false;", CloseCode.INVALID_OPERATOR_ARITY),
        ("a=gt:abc;", CloseCode.INVALID_VALUE),
        ("a=bool:maybe;", CloseCode.INVALID_VALUE),
    ],
)
def test_where_errors_have_their_close_code(where: str, code: CloseCode) -> None:
    with pytest.raises(CloseError) as err:
        parse_where(where)
    assert err.value.code == code


def test_where_before_fields() -> None:
    flt = Filter.parse(fields="attrs/temperature", where="metadata.tenant=in:admin;")
    assert flt.apply(MSG) == {"attrs": {"temperature": 20}}
    assert Filter.parse(fields="attrs", where="metadata.tenant=in:other;").apply(MSG) is None


def test_signed_payload_round_trip_and_tamper() -> None:
    payload = TicketPayload("admin", "alice", 123.5)
    stored = sign_payload(payload, b"secret")
    assert verify_payload(stored, b"secret") == payload
    with pytest.raises(CloseError) as err:
        verify_payload(stored, b"other")
    assert err.value.code == CloseCode.INVALID_TICKET
    with pytest.raises(CloseError):
        verify_payload(b"x" + stored, b"secret")
    assert is_ticket("a" * 64) and not is_ticket("A" * 64) and not is_ticket("a" * 63)


def test_close_reason_fits_a_close_frame() -> None:
    assert len(CloseError(CloseCode.INTERNAL, "x" * 500).frame_reason.encode()) <= 123


def test_wildcard_skips_scalars_it_would_reach_into() -> None:
    msg = {"sensor": {"status": "ok", "rain": {"enabled": True}}}
    assert apply_fields(msg, parse_fields("sensor/*/enabled")) == {"sensor": {"rain": {"enabled": True}}}
    assert apply_fields(msg, parse_fields("sensor/status/x")) == {"sensor": {}}
