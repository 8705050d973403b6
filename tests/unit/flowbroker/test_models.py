"""Validation of a flow on save: dojot's exported flows pass unchanged; unknown types, dangling wires and missing
required fields are refused naming the node and the reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flowbroker.models import CATALOGUE, FlowSpec, InvalidFlow, MissingField, validate_flow
from tests.unit.flowbroker import flows

pytestmark = pytest.mark.unit


def _refused(nodes: list[dict[str, Any]]) -> InvalidFlow:
    with pytest.raises(InvalidFlow) as info:
        validate_flow(nodes)
    return info.value


@pytest.mark.parametrize(
    "nodes",
    [
        flows.rename_flow("9face8", "abc123"),
        flows.kitchen_flow("9face8", "abc123"),
        flows.rain_flow("9face8"),
        [],
    ],
)
def test_dojot_flows_are_accepted_unchanged(nodes: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(nodes)
    spec = FlowSpec.parse({"name": "f", "enabled": True, "flow": nodes})
    assert spec.flow == before


def test_flow_field_is_mandatory() -> None:
    with pytest.raises(MissingField) as info:
        FlowSpec.parse({"name": "x"})
    assert info.value.to_dict() == {"error": "invalid", "message": "Missing mandatory field", "field": "flow"}


def test_name_and_enabled_defaults() -> None:
    spec = FlowSpec.parse({"flow": []})
    assert (spec.name, spec.enabled) == ("", True)
    with pytest.raises(InvalidFlow):
        FlowSpec.parse({"flow": [], "enabled": "yes"})


def test_unknown_node_type_names_the_node() -> None:
    nodes = flows.rename_flow("a", "b")
    nodes[2]["type"] = "function"
    err = _refused(nodes)
    assert err.node == "Ac1"
    assert "unknown node type 'function'" in err.reason
    assert err.to_dict()["node"] == "Ac1"


def test_dangling_wire_names_the_node() -> None:
    nodes = flows.rename_flow("a", "b")
    nodes[1]["wires"] = [["nowhere"]]
    err = _refused(nodes)
    assert err.node == "A920a88fb88b6a8"
    assert "nowhere" in err.reason


def test_wire_into_an_entry_node_is_refused() -> None:
    nodes = flows.rename_flow("a", "b")
    nodes[2]["wires"] = [["A920a88fb88b6a8"]]
    assert "takes no input" in _refused(nodes).reason


def test_duplicate_ids_are_refused() -> None:
    nodes = flows.rename_flow("a", "b")
    nodes[3]["id"] = "Ac1"
    assert _refused(nodes).node == "Ac1"


@pytest.mark.parametrize(
    ("index", "field", "value", "reason"),
    [
        (1, "device_id", "", "device_id"),
        (2, "rules", [], "rules"),
        (2, "rules", [{"t": "sett", "p": "x"}], "t must be one of"),
        (2, "rules", [{"t": "move", "p": "x"}], "move needs to"),
        (3, "attrs", "", "attrs"),
        (3, "devices_source_configured", [""], "no device"),
        (3, "device_source", "elsewhere", "device_source"),
    ],
)
def test_missing_or_bad_required_fields(index: int, field: str, value: Any, reason: str) -> None:
    nodes = flows.rename_flow("a", "b")
    nodes[index][field] = value
    err = _refused(nodes)
    assert err.node == nodes[index]["id"]
    assert reason in err.reason


def test_node_specific_checks() -> None:
    rain = flows.rain_flow("a")
    rain[2]["timePeriod"] = "0"
    assert _refused(rain).node == "sum1"
    rain = flows.rain_flow("a")
    rain[3]["rules"] = [{"t": "regex", "v": "(", "vt": "str"}]
    assert "regular expression" in _refused(rain).reason
    rain = flows.rain_flow("a")
    rain[5]["msgType"] = "dynamic"
    rain[5]["messageDynamic"] = ""
    assert _refused(rain).node == "n1"
    geo = [
        {"id": "g", "type": "geofence", "filter": "inside", "points": [{"latitude": 1, "longitude": 2}], "wires": []}
    ]
    assert "points" in _refused(geo).reason
    http = [{"id": "h", "type": "http", "method": "POST", "body": "req", "response": "", "wires": [[]]}]
    assert "response" in _refused(http).reason


def test_elements_must_be_nodes_with_ids() -> None:
    assert "not a node object" in _refused([1]).reason  # type: ignore[list-item]
    assert "no id" in _refused([{"type": "change"}]).reason


def test_catalogue_lists_dojot_types() -> None:
    for name in (
        "event device in",
        "multi device out",
        "change",
        "switch",
        "template",
        "http",
        "notification",
        "geofence",
        "get context",
        "merge data",
        "cumulative sum",
        "device in",
        "device out",
        "actuate",
        "multi actuate",
        "publish-ftp",
        "cron",
        "ftp",
    ):
        assert name in CATALOGUE
    assert CATALOGUE["change"].to_dict()["id"] == "dojot/change"
    assert CATALOGUE["cron"].to_dict()["enabled"] is False


def test_allowed_networks_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowbroker.settings import Settings
    from ondas.settings import SettingsError

    monkeypatch.setenv("FLOWBROKER_DB_URL", "postgresql://unused")
    monkeypatch.setenv("FLOWBROKER_HTTP_ALLOWED_NETWORKS", "127.0.0.1/32, 10.0.0.0/8")
    assert Settings.from_env().http_allowed_networks == "127.0.0.1/32, 10.0.0.0/8"
    monkeypatch.setenv("FLOWBROKER_HTTP_ALLOWED_NETWORKS", "localhost")
    with pytest.raises(SettingsError, match="not a network"):
        Settings.from_env()
    monkeypatch.delenv("FLOWBROKER_HTTP_ALLOWED_NETWORKS")
    assert Settings.from_env().http_allowed_networks == ""
