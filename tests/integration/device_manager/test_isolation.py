"""Tenant isolation: a token of tenant A cannot see, change, actuate or export anything of tenant B, whether it
guesses ids or uses filters. Ids are per tenant, so both tenants hold a template 1 with the same attributes."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from device_manager.settings import Settings
from tests.integration.device_manager.helpers import Api, attr, outbox_count

pytestmark = pytest.mark.integration


@pytest.fixture
def tenants(client: FlaskClient, tokens: Any, unique: str) -> tuple[Api, Api]:
    return Api(client, tokens.headers(f"{unique}a")), Api(client, tokens.headers(f"{unique}b"))


def test_a_cannot_reach_b(tenants: tuple[Api, Api], settings: Settings, unique: str) -> None:
    a, b = tenants
    serial = attr("serial", "static", "string", static_value="b-secret")
    tb = b.template("b template", attr("fan", "actuator", "integer"), serial)
    b_only = b.template("b only", attr("x"))
    dev_b = b.device("b device", [tb["id"]], id="0bb0")
    b_export = b.get("/export")
    ta = a.template("a template", attr("fan", "actuator", "integer"))
    assert ta["id"] == tb["id"] == 1  # the same id in both tenants
    dev_a = a.device("a device", [ta["id"]])
    before = outbox_count(settings.db_url)
    last_seq = _last_seq(settings.db_url)

    # Guessing ids.
    a.get(f"/device/{dev_b}", status=404)
    a.put(f"/device/{dev_b}", {"label": "mine", "templates": [ta["id"]]}, status=404)
    a.put(f"/device/{dev_b}/actuate", {"attrs": {"fan": 1}}, status=404)
    a.put(f"/device/{dev_b}/template/{ta['id']}", status=404)
    a.delete(f"/device/{dev_b}/template/{tb['id']}", status=404)
    a.delete(f"/device/{dev_b}", status=404)
    a.get(f"/template/{b_only['id']}", status=404)
    a.put(f"/template/{b_only['id']}", {"label": "mine"}, status=404)
    a.delete(f"/template/{b_only['id']}", status=404)
    a.get(f"/device/template/{b_only['id']}", status=404)
    a.post("/device", {"label": "x", "templates": [b_only["id"]]}, status=404)
    a.put(f"/device/{dev_a}/template/{b_only['id']}", status=404)
    a.post("/device", {"label": "x", "templates": [], "id": dev_b})  # the id is free in tenant A

    # Filters.
    assert a.get("/device?attr=serial=b-secret")["devices"] == []
    assert a.get("/device?label=b device")["devices"] == []
    assert a.get(f"/device?template={b_only['id']}")["devices"] == []
    assert "b device" not in [d["label"] for d in a.get("/device?page_size=1000")["devices"]]
    assert a.get("/device?idsOnly=true&label=b") == []
    assert a.get("/template?label=b")["templates"] == []
    assert a.get("/template?attr=serial=b-secret")["templates"] == []
    assert a.get(f"/device/template/{ta['id']}")["pagination"]["total_items"] == 1

    # Export shows A's own configuration only; A's import and delete-all leave B alone.
    exported = a.get("/export")
    assert [t["label"] for t in exported["templates"]] == ["a template"]
    assert sorted(d["id"] for d in exported["devices"]) == sorted([dev_a, dev_b])  # A's own 0bb0
    assert all(d["label"] != "b device" for d in exported["devices"])
    a.post("/import", {"templates": [], "devices": []})
    a.delete("/device")
    a.delete("/template")

    # Tenant B is exactly as it was, and A's changes queued no event for B.
    assert b.get("/export") == b_export
    assert b.get(f"/device/{dev_b}")["label"] == "b device"
    assert _outbox_tenants(settings.db_url, after=last_seq) == {f"{unique}a"}
    assert outbox_count(settings.db_url) > before


def _outbox_tenants(db_url: str, after: int) -> set[str]:
    with psycopg.connect(db_url) as conn:
        return {r[0] for r in conn.execute("SELECT tenant FROM outbox WHERE seq > %s", (after,))}


def _last_seq(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()
    return int(row[0]) if row else 0


def test_internal_routes_are_per_tenant(client: FlaskClient, tenants: tuple[Api, Api], unique: str) -> None:
    _, b = tenants
    t = b.template("t", attr("x"))
    dev_b = b.device("d", [t["id"]])
    assert client.get(f"/internal/tenants/{unique}a/devices").get_json() == {"devices": []}
    assert client.get(f"/internal/tenants/{unique}a/devices/{dev_b}").status_code == 404
    assert client.get(f"/internal/tenants/{unique}b/devices/{dev_b}").get_json() == b.get(f"/device/{dev_b}")
    assert client.get("/internal/tenants/Bad%20Tenant/devices").status_code == 400
