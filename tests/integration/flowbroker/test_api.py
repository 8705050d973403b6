"""The REST API against the real PostgreSQL: dojot's paths, shapes and error bodies, validation on save, tenant
isolation."""

from __future__ import annotations

import copy

import pytest

from tests.integration.flowbroker.conftest import Api
from tests.unit.flowbroker import flows

pytestmark = pytest.mark.integration


def test_crud_in_dojots_shapes(api: Api) -> None:
    nodes = flows.rename_flow("9face8", "abc123")
    status, body = api.call("POST", "/flows/v1/flow", {"name": "secondflow", "enabled": True, "flow": nodes})
    assert status == 200
    assert body["message"] == "ok"
    flow = body["flow"]
    assert set(flow) == {"name", "enabled", "id", "flow", "created", "updated"}
    assert flow["flow"] == nodes  # stored and given back unchanged (tab, z, x, y, wires, every field)
    assert isinstance(flow["created"], int) and flow["created"] == flow["updated"]
    fid = flow["id"]

    assert api.call("GET", f"/flows/v1/flow/{fid}") == (200, {"message": "ok", "flow": flow})
    status, listed = api.call("GET", "/flows/v1/flow")
    assert status == 200 and listed == {"flows": [flow]}

    changed = copy.deepcopy(nodes)
    changed[2]["rules"][0]["p"] = "output.temperature"
    status, body = api.call("PUT", f"/flows/v1/flow/{fid}", {"name": "newflowname", "enabled": False, "flow": changed})
    assert status == 200 and body["message"] == "ok"
    assert body["flow"]["name"] == "newflowname" and body["flow"]["enabled"] is False
    assert body["flow"]["flow"] == changed
    assert body["flow"]["created"] == flow["created"] and body["flow"]["updated"] >= flow["updated"]

    status, body = api.call("DELETE", f"/flows/v1/flow/{fid}")
    assert status == 200 and body["message"] == "flow removed" and body["flow"]["id"] == fid
    status, body = api.call("GET", f"/flows/v1/flow/{fid}")
    assert status == 404
    assert body["message"] == f"Unknown flow: {fid}" and body["flow"] == fid


def test_delete_all(api: Api) -> None:
    api.create([])
    api.create([])
    assert api.call("DELETE", "/flows/v1/flow") == (200, {"message": "All flows removed"})
    assert api.call("GET", "/flows/v1/flow") == (200, {"flows": []})


def test_unknown_flow_404s(api: Api) -> None:
    for method, body in (("GET", None), ("PUT", {"flow": []}), ("DELETE", None)):
        status, answer = api.call(method, "/flows/v1/flow/777777", body)
        assert status == 404
        assert answer["message"] == "Unknown flow: 777777" and answer["flow"] == "777777"


def test_validation_errors_name_the_node(api: Api) -> None:
    status, body = api.call("POST", "/flows/v1/flow", {"name": "x"})
    assert status == 400 and body["message"] == "Missing mandatory field"
    nodes = flows.rename_flow("a", "b")
    nodes[1]["wires"] = [["ghost"]]
    status, body = api.call("POST", "/flows/v1/flow", {"name": "x", "flow": nodes})
    assert status == 400
    assert body["node"] == "A920a88fb88b6a8" and "ghost" in body["reason"]
    nodes = flows.rename_flow("a", "b")
    nodes[3]["type"] = "kelvin"
    status, body = api.call("POST", "/flows/v1/flow", {"name": "x", "flow": nodes})
    assert status == 400 and body["node"] == "A2a3e9053e945f" and "unknown node type" in body["reason"]
    nodes = flows.rename_flow("a", "b")
    del nodes[3]["attrs"]
    fid = api.create(flows.rename_flow("a", "b"))
    status, body = api.call("PUT", f"/flows/v1/flow/{fid}", {"flow": nodes})
    assert status == 400 and body["node"] == "A2a3e9053e945f" and "attrs" in body["reason"]
    assert api.call("GET", f"/flows/v1/flow/{fid}")[1]["flow"]["flow"] == flows.rename_flow("a", "b")


def test_tenants_are_isolated(api: Api, api_b: Api) -> None:
    fid = api.create(flows.rename_flow("a", "b"), name="a's")
    assert api_b.call("GET", "/flows/v1/flow") == (200, {"flows": []})
    assert api_b.call("GET", f"/flows/v1/flow/{fid}")[0] == 404
    assert api_b.call("PUT", f"/flows/v1/flow/{fid}", {"flow": []})[0] == 404
    assert api_b.call("DELETE", f"/flows/v1/flow/{fid}")[0] == 404
    assert api_b.call("DELETE", "/flows/v1/flow")[0] == 200
    status, body = api.call("GET", f"/flows/v1/flow/{fid}")
    assert status == 200 and body["flow"]["name"] == "a's" and body["flow"]["flow"] == flows.rename_flow("a", "b")


def test_node_lists(api: Api) -> None:
    assert api.call("GET", "/flows/v1/node") == (200, {"nodes": []})
    status, types = api.call("GET", "/flows/nodes")
    assert status == 200
    change = next(t for t in types if t["name"] == "change")
    assert change == {
        "id": "dojot/change",
        "name": "change",
        "module": "dojot",
        "version": "1.0.0",
        "enabled": True,
        "local": True,
        "types": ["change"],
    }


def test_token_required(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/flows/v1/flow")
    assert resp.status_code == 401
