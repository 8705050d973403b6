"""The platform's one JSON rule (ondas/jsonbody.py) and how every Flask service applies it (ondas/web.py)."""

from __future__ import annotations

import json

import pytest
from flask import Flask, jsonify, request

from agents.core.payload import Drop, decode_attrs
from agents.http.messages import decode_json
from ondas import jsonbody
from ondas.health import Health
from ondas.web import create_app, json_body

pytestmark = pytest.mark.unit


def nested(levels: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * levels + b"1" + closer * levels


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"1", 0),
        (b'"[[[{"', 0),
        (b"{}", 1),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a\\"[[": [1]}', 2),
        (b'["\\\\", [2]]', 2),
        (nested(1000), 1000),
        (b'{"a":' * 500 + b"1" + b"}" * 500, 500),
        (b"[[[", 3),  # not JSON: an upper bound, not an error
    ],
    ids=repr,
)
def test_text_depth(raw, expected):
    assert jsonbody.text_depth(raw) == expected


def test_text_depth_agrees_with_the_parsed_depth():
    for doc in [{"a": [1, [2, [3]]]}, [[], [[]], {"x": {"y": "[{"}}], {"s": "]]]]"}]:
        raw = json.dumps(doc).encode()
        assert jsonbody.text_depth(raw) == jsonbody.depth(doc)


def test_text_depth_stops_early():
    assert jsonbody.text_depth(nested(100_000), stop=64) == 65


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (nested(1000), "too_deep"),
        (nested(100_000), "too_deep"),
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, "too_deep"),
        (nested(65), "too_deep"),
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"a": "\xc3"}', "not_utf8"),
        (b"temperature=10", "not_json"),
        (b"NaN", "not_json"),
        (b'{"a": Infinity}', "not_json"),
        (b"", "not_json"),
    ],
    ids=repr,
)
def test_loads_refuses(raw, reason):
    with pytest.raises(jsonbody.BadJson) as err:
        jsonbody.loads(raw)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_loads_refuses_too_large_before_anything_else():
    with pytest.raises(jsonbody.BadJson) as err:
        jsonbody.loads(b"\xff" * 11, max_bytes=10)
    assert err.value.reason == "too_large"


def test_loads_accepts_up_to_the_limit():
    assert jsonbody.loads(nested(64)) is not None
    assert jsonbody.loads(nested(3), max_depth=3) is not None
    assert jsonbody.loads('{"é": "ü"}'.encode()) == {"é": "ü"}


# -- the agents use the same rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "reason"),
    [(nested(1000, b'{"a":', b"}"), "too_deep"), (b"\xff", "not_utf8"), (b"x", "not_json"), (b"[1]", "not_object")],
)
def test_device_payloads_follow_the_rule(raw, reason):
    with pytest.raises(Drop) as err:
        decode_attrs(raw, 100_000, 32)
    assert err.value.reason == reason


def test_http_agent_bodies_follow_the_rule():
    with pytest.raises(Drop) as err:
        decode_json(nested(1000))
    assert err.value.reason == "too_deep"
    with pytest.raises(Drop) as err:
        decode_json(b"\xff")
    assert err.value.reason == "not_utf8"


# -- every Flask service ------------------------------------------------------------------------------------------
@pytest.fixture
def app() -> Flask:
    app = create_app("test", Health("test"), max_body_bytes=4096)

    @app.post("/body")
    def _body():
        return jsonify(json_body())

    @app.post("/get-json")
    def _get_json():
        return jsonify({"got": request.get_json(silent=True)})

    @app.get("/plain")
    def _plain():
        return jsonify({"ok": True})

    return app


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (nested(1000), 400, "too_deep"),
        (nested(1000, b'{"a":', b"}")[:4000] + b"}" * 90, 400, "too_deep"),
        (b"\xff\xfe", 400, "not_utf8"),
        (b"not json", 400, "not_json"),
        (b"[" + b"1," * 5000 + b"1]", 413, None),
    ],
    ids=["deep-array", "deep-object", "not-utf8", "not-json", "too-large"],
)
def test_json_body_refusals_are_in_the_error_shape(app, raw, status, reason):
    r = app.test_client().post("/body", data=raw, content_type="application/json")
    assert r.status_code == status
    body = r.get_json()
    assert body["error"] == ("invalid" if status == 400 else "payload_too_large")
    assert isinstance(body["message"], str)
    if reason:
        assert body["details"] == {"reason": reason}


def test_json_body_accepts_a_good_body(app):
    r = app.test_client().post("/body", json={"a": [1, {"b": 2}]})
    assert r.status_code == 200
    assert r.get_json() == {"a": [1, {"b": 2}]}


def test_get_json_follows_the_rule_too(app):
    client = app.test_client()
    assert client.post("/get-json", data=nested(1000), content_type="application/json").get_json() == {"got": None}
    assert client.post("/get-json", json=[[1]]).get_json() == {"got": [[1]]}


@pytest.mark.parametrize(
    "target", ["/plain%0a", "/plain%0D", "/pl%00ain", "/plain%7f", "/nowhere%0a", "/health/live%0a"]
)
def test_control_characters_in_the_path_match_no_route(app, target):
    r = app.test_client().get(target)
    assert r.status_code == 404
    assert r.get_json()["error"] == "not_found"


def test_a_query_string_is_left_to_the_route(app):
    assert app.test_client().get("/plain?x=%0a").status_code == 200


def test_control_characters_in_a_header_value_are_a_400(app):
    r = app.test_client().get("/plain", headers={"User-Agent": "a\x01b"})
    assert r.status_code == 400
    assert r.get_json()["message"] == "control characters in the header User-Agent"
    assert app.test_client().get("/plain", headers={"User-Agent": "a\tb"}).status_code == 200


def test_an_unprintable_request_id_is_not_echoed(app):
    r = app.test_client().get("/plain", headers={"X-Request-Id": "a\x01b"})
    assert r.status_code == 400
    assert r.headers["X-Request-Id"] != "a\x01b"
    assert app.test_client().get("/plain", headers={"X-Request-Id": "req-1"}).headers["X-Request-Id"] == "req-1"
