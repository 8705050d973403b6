"""The device manager's REST API against real PostgreSQL and a real Kafka-protocol broker; events are checked
by consuming them from the broker."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from device_manager.settings import Settings
from ondas import topics
from tests.integration.device_manager.helpers import RelayRunner, consume, outbox_count, wait_for

pytestmark = pytest.mark.integration

THERMOMETER = {
    "label": "Thermometer Template",
    "attrs": [
        {"label": "temperature", "type": "dynamic", "value_type": "float"},
        {"label": "fan", "type": "actuator", "value_type": "float"},
    ],
}


def create_template(client: FlaskClient, headers: dict[str, str], body: dict[str, Any] = THERMOMETER) -> int:
    resp = client.post("/template", json=body, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return int(resp.get_json()["template"]["id"])


def create_device(client: FlaskClient, headers: dict[str, str], template: int, label: str = "device") -> str:
    resp = client.post("/device", json={"templates": [str(template)], "label": label}, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return str(resp.get_json()["devices"][0]["id"])


def test_tutorial_flow_template_device_actuate_delete(
    client: FlaskClient, relay: RelayRunner, settings: Settings, tokens: Any, unique: str, kafka_bootstrap: str
) -> None:
    headers = tokens.headers(unique)

    resp = client.post("/template", json=THERMOMETER, headers=headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["result"] == "ok"
    template = body["template"]
    assert template["id"] == 1  # a new tenant's first template, as in the tutorial
    assert template["label"] == "Thermometer Template"
    assert [a["label"] for a in template["attrs"]] == ["temperature", "fan"]
    assert template["data_attrs"] == template["attrs"]
    assert template["config_attrs"] == []
    temperature = template["attrs"][0]
    assert temperature["template_id"] == "1" and isinstance(temperature["id"], int)
    assert temperature["type"] == "dynamic" and temperature["value_type"] == "float"
    assert temperature["created"].endswith("+00:00")

    assert client.get("/template/1", headers=headers).get_json() == template
    listing = client.get("/template", headers=headers).get_json()
    assert listing["templates"] == [template]
    assert listing["pagination"] == {"page": 1, "total": 1, "has_next": False, "next_page": None, "total_items": 1}

    resp = client.post("/device", json={"templates": ["1"], "label": "device"}, headers=headers)
    assert resp.status_code == 200
    created = resp.get_json()
    assert created["message"] == "devices created"
    [dev] = created["devices"]
    assert dev["label"] == "device" and len(dev["id"]) == 6
    device_id = dev["id"]

    devices = client.get("/device", headers=headers).get_json()
    assert devices["pagination"] == {"page": 1, "total": 1, "has_next": False, "next_page": None, "total_items": 1}
    [device] = devices["devices"]
    assert device["id"] == device_id and device["templates"] == [1]
    assert device["attrs"] == {"1": [{**a, "is_static_overridden": False} for a in template["attrs"]]}
    assert client.get(f"/device/{device_id}", headers=headers).get_json() == device

    resp = client.put(f"/device/{device_id}/actuate", json={"attrs": {"fan": 100}}, headers=headers)
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "configuration sent to device"}

    resp = client.delete(f"/device/{device_id}", headers=headers)
    assert resp.status_code == 200
    assert resp.get_json() == {"result": "ok", "removed_device": device}
    assert client.get(f"/device/{device_id}", headers=headers).status_code == 404

    events = consume(kafka_bootstrap, topics.device_events(unique), 3)
    assert [k for k, _ in events] == [device_id] * 3
    create, configure, remove = (v for _, v in events)
    assert create == {"event": "create", "meta": {"service": unique}, "data": device}
    assert configure["event"] == "configure"
    assert configure["meta"]["service"] == unique
    assert isinstance(configure["meta"]["timestamp"], int) and configure["meta"]["timestamp"] > 1_600_000_000_000
    assert configure["data"] == {"id": device_id, "attrs": {"fan": 100}}
    assert remove == {"event": "remove", "meta": {"service": unique}, "data": {"id": device_id}}
    wait_for(lambda: outbox_count(settings.db_url) == 0, what="the outbox to be emptied")


def test_static_and_meta_attrs_and_count(client: FlaskClient, tokens: Any, unique: str) -> None:
    headers = tokens.headers(unique)
    body = {
        "label": "SensorModel",
        "attrs": [
            {"label": "temperature", "type": "dynamic", "value_type": "float"},
            {"label": "model-id", "type": "static", "value_type": "string", "static_value": "model-001"},
            {"label": "protocol", "type": "meta", "value_type": "string", "static_value": "mqtt"},
        ],
    }
    template = client.post("/template", json=body, headers=headers).get_json()["template"]
    assert [a["label"] for a in template["data_attrs"]] == ["temperature", "model-id"]
    assert [a["label"] for a in template["config_attrs"]] == ["protocol"]
    assert template["attrs"][1]["static_value"] == "model-001"
    assert "static_value" not in template["attrs"][0]

    resp = client.post("/device?count=3", json={"templates": [template["id"]], "label": "test_device"}, headers=headers)
    assert resp.status_code == 200
    devices = resp.get_json()["devices"]
    assert [d["label"] for d in devices] == ["test_device_0", "test_device_1", "test_device_2"]
    assert len({d["id"] for d in devices}) == 3

    page = client.get("/device?page_size=2&page_num=1", headers=headers).get_json()
    assert page["pagination"] == {"page": 1, "total": 2, "has_next": True, "next_page": 2, "total_items": 3}
    assert len(page["devices"]) == 2
    page2 = client.get("/device?page_size=2&page_num=2", headers=headers).get_json()
    assert page2["pagination"] == {"page": 2, "total": 2, "has_next": False, "next_page": None, "total_items": 3}
    assert {d["id"] for d in page["devices"] + page2["devices"]} == {d["id"] for d in devices}

    resp = client.post(
        "/device", json={"templates": [template["id"]], "label": "mine", "id": "ABC123"}, headers=headers
    )
    assert resp.get_json()["devices"] == [{"id": "abc123", "label": "mine"}]
    resp = client.post(
        "/device", json={"templates": [template["id"]], "label": "again", "id": "abc123"}, headers=headers
    )
    assert resp.status_code == 409


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/template", None, "JSON body"),
        ("/template", [], "JSON object"),
        ("/template", {"attrs": []}, "label is required"),
        ("/template", {"label": "x", "attrs": [{"label": "a", "type": "bogus", "value_type": "float"}]}, "type"),
        ("/template", {"label": "x", "attrs": [{"label": "a", "type": "dynamic", "value_type": "int"}]}, "value_type"),
        (
            "/template",
            {
                "label": "x",
                "attrs": [
                    {"label": "a", "type": "dynamic", "value_type": "float"},
                    {"label": "a", "type": "static", "value_type": "string"},
                ],
            },
            "unique",
        ),
        ("/template", {"label": "x\u0000y"}, "NUL"),
        ("/device", {"label": "d"}, "templates is required"),
        ("/device", {"label": "d", "templates": ["one"]}, "template ids"),
        ("/device", {"label": "d", "templates": [], "id": "xyz"}, "hexadecimal"),
    ],
    ids=[
        "template-no-body",
        "template-not-object",
        "template-no-label",
        "attr-bad-type",
        "attr-bad-value-type",
        "attr-repeated",
        "nul-in-label",
        "device-no-templates",
        "device-bad-template-id",
        "device-bad-id",
    ],
)
def test_bad_bodies_are_400(
    client: FlaskClient, tokens: Any, unique: str, path: str, body: Any, fragment: str, settings: Settings
) -> None:
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    resp = client.post(path, headers=tokens.headers(unique), **kwargs)
    assert resp.status_code == 400, resp.get_json()
    payload = resp.get_json()
    assert payload["error"] == "invalid"
    assert fragment in payload["message"]
    assert outbox_count(settings.db_url) == 0


def test_repeated_attributes_across_templates_are_400(client: FlaskClient, tokens: Any, unique: str) -> None:
    headers = tokens.headers(unique)
    t1 = create_template(client, headers)
    t2 = create_template(client, headers, {"label": "other", "attrs": THERMOMETER["attrs"][:1]})
    resp = client.post("/device", json={"label": "d", "templates": [t1, t2]}, headers=headers)
    assert resp.status_code == 400
    assert "repeated attributes" in resp.get_json()["message"]


def test_pagination_arguments_are_checked(client: FlaskClient, tokens: Any, unique: str) -> None:
    headers = tokens.headers(unique)
    for query in ("page_num=0", "page_size=0", "page_size=abc", "page_size=100000"):
        resp = client.get(f"/device?{query}", headers=headers)
        assert resp.status_code == 400, query
    empty = client.get("/template", headers=headers).get_json()
    assert empty == {
        "templates": [],
        "pagination": {"page": 1, "total": 0, "has_next": False, "next_page": None, "total_items": 0},
    }


def test_actuate_rules(client: FlaskClient, tokens: Any, unique: str, settings: Settings) -> None:
    headers = tokens.headers(unique)
    device_id = create_device(client, headers, create_template(client, headers))
    before = outbox_count(settings.db_url)

    resp = client.put(
        f"/device/{device_id}/actuate", json={"attrs": {"fan": 1, "temperature": 2, "x": 3}}, headers=headers
    )
    assert resp.status_code == 403
    body = resp.get_json()
    assert body["error"] == "forbidden"
    assert body["attrs"] == ["temperature", "x"]
    assert body["status"] == "some of the attributes are not configurable"
    assert "temperature" in body["message"]

    assert client.put("/device/ffffff/actuate", json={"attrs": {"fan": 1}}, headers=headers).status_code == 404
    for bad in ({}, {"attrs": {}}, {"attrs": [1]}, {"fan": 1}):
        assert client.put(f"/device/{device_id}/actuate", json=bad, headers=headers).status_code == 400, bad
    assert outbox_count(settings.db_url) == before


def test_internal_actuate_follows_the_actuate_rules_within_the_named_tenant(
    client: FlaskClient, relay: RelayRunner, tokens: Any, unique: str, kafka_bootstrap: str
) -> None:
    headers = tokens.headers(unique)
    device_id = create_device(client, headers, create_template(client, headers))
    other = f"{unique}_b"
    other_device = create_device(client, tokens.headers(other), create_template(client, tokens.headers(other)))
    internal = f"/internal/tenants/{unique}/devices"

    resp = client.put(f"{internal}/{device_id}/actuate", json={"attrs": {"fan": 7}})
    assert resp.status_code == 200 and resp.get_json() == {"status": "configuration sent to device"}
    # Another tenant's device is unknown in this tenant; the rules and errors are those of PUT /device/<id>/actuate.
    assert client.put(f"{internal}/{other_device}/actuate", json={"attrs": {"fan": 1}}).status_code == 404
    resp = client.put(f"{internal}/{device_id}/actuate", json={"attrs": {"temperature": 2}})
    assert resp.status_code == 403 and resp.get_json()["attrs"] == ["temperature"]
    assert client.put(f"{internal}/{device_id}/actuate", json={"attrs": {}}).status_code == 400
    assert (
        client.put(f"/internal/tenants/Not-A-Tenant/devices/{device_id}/actuate", json={"attrs": {}}).status_code == 400
    )

    _create, configure = (v for _, v in consume(kafka_bootstrap, topics.device_events(unique), 2))
    assert configure["event"] == "configure" and configure["meta"]["service"] == unique
    assert configure["data"] == {"id": device_id, "attrs": {"fan": 7}}


def test_not_found(client: FlaskClient, tokens: Any, unique: str) -> None:
    headers = tokens.headers(unique)
    resp = client.get("/device/abcdef", headers=headers)
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "not_found", "message": "No such device: abcdef"}
    assert client.delete("/device/abcdef", headers=headers).status_code == 404
    assert client.get("/template/42", headers=headers).get_json()["message"] == "No such template: 42"
    assert client.get("/template/nope", headers=headers).status_code == 404


def test_token_required(client: FlaskClient, tokens: Any, unique: str) -> None:
    assert client.get("/device").status_code == 401
    assert client.post("/template", json=THERMOMETER).status_code == 401
    assert client.get("/device", headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_tenant_isolation(
    client: FlaskClient, relay: RelayRunner, tokens: Any, unique: str, kafka_bootstrap: str
) -> None:
    tenant_a, tenant_b = f"{unique}a", f"{unique}b"
    a, b = tokens.headers(tenant_a), tokens.headers(tenant_b)
    ta = create_template(client, a)
    tb = create_template(client, b)
    assert ta == tb == 1  # ids are per tenant
    dev_b = create_device(client, b, tb, "b-device")
    dev_a = create_device(client, a, ta, "a-device")

    assert [d["id"] for d in client.get("/device", headers=a).get_json()["devices"]] == [dev_a]
    assert [d["id"] for d in client.get("/device", headers=b).get_json()["devices"]] == [dev_b]
    assert client.get(f"/device/{dev_b}", headers=a).status_code == 404
    assert client.put(f"/device/{dev_b}/actuate", json={"attrs": {"fan": 1}}, headers=a).status_code == 404
    assert client.delete(f"/device/{dev_b}", headers=a).status_code == 404
    assert client.get(f"/device/{dev_b}", headers=b).status_code == 200

    # A template of another tenant is unknown, even with the same label.
    t_only_b = create_template(client, b, {"label": "b-only", "attrs": []})
    resp = client.post("/device", json={"label": "x", "templates": [t_only_b]}, headers=a)
    assert resp.status_code == 404 and resp.get_json()["message"] == f"No such template: {t_only_b}"
    assert client.get(f"/template/{t_only_b}", headers=a).status_code == 404
    assert len(client.get("/template", headers=a).get_json()["templates"]) == 1

    internal_a = client.get(f"/internal/tenants/{tenant_a}/devices").get_json()
    assert [d["id"] for d in internal_a["devices"]] == [dev_a]
    assert internal_a["devices"][0] == client.get(f"/device/{dev_a}", headers=a).get_json()
    assert client.get("/internal/tenants/Not-A-Tenant/devices").status_code == 400
    one = client.get(f"/internal/tenants/{tenant_a}/devices/{dev_a}")
    assert one.status_code == 200 and one.get_json() == internal_a["devices"][0]
    assert client.get(f"/internal/tenants/{tenant_b}/devices/{dev_a}").status_code == 404

    # Each tenant's events go to its own topic only.
    [(key_a, ev_a)] = consume(kafka_bootstrap, topics.device_events(tenant_a), 1)
    assert key_a == dev_a and ev_a["meta"]["service"] == tenant_a
    [(key_b, ev_b)] = consume(kafka_bootstrap, topics.device_events(tenant_b), 1)
    assert key_b == dev_b and ev_b["meta"]["service"] == tenant_b


def test_health_and_metrics(client: FlaskClient) -> None:
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"postgres": "ok"}
    assert client.get("/metrics").status_code == 200
