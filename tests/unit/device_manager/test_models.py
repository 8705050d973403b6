"""Parsing of request bodies and the dojot JSON shapes (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from device_manager.models import (
    Attr,
    AttrSpec,
    Device,
    DeviceSpec,
    Filter,
    Meta,
    MetaSpec,
    MissingLabel,
    OverrideSpec,
    Page,
    PageRequest,
    Template,
    TemplateNotFound,
    TemplatesInUse,
    TemplateSpec,
    iso,
    parse_actuation,
    parse_attr_format,
    parse_bool,
    template_id,
)
from ondas.errors import Invalid

pytestmark = pytest.mark.unit

T0 = datetime(2018, 1, 25, 12, 30, 42, 164695, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"label": "t"}, TemplateSpec("t", ())),
        (
            {"label": "t", "attrs": [{"label": "temperature", "type": "dynamic", "value_type": "float"}]},
            TemplateSpec("t", (AttrSpec("temperature", "dynamic", "float"),)),
        ),
        (
            {"label": "t", "attrs": [{"label": "m", "type": "static", "value_type": "string", "static_value": "x"}]},
            TemplateSpec("t", (AttrSpec("m", "static", "string", "x"),)),
        ),
        (
            {"label": "t", "attrs": [{"label": "p", "type": "dynamic", "value_type": "geo:point"}]},
            TemplateSpec("t", (AttrSpec("p", "dynamic", "geo:point"),)),
        ),
    ],
    ids=["no-attrs", "dynamic", "static-value", "geo-point"],
)
def test_template_spec_parses(body: dict[str, Any], expected: TemplateSpec) -> None:
    assert TemplateSpec.parse(body) == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "label is required"),
        ({"label": ""}, "label is required"),
        ({"label": 3}, "label is required"),
        ({"label": "x" * 129}, "at most 128"),
        ({"label": "t", "attrs": {}}, "attrs must be a list"),
        ({"label": "t", "attrs": ["temperature"]}, "attrs[0] must be an object"),
        ({"label": "t", "attrs": [{"type": "dynamic", "value_type": "float"}]}, "attrs[0].label"),
        ({"label": "t", "attrs": [{"label": "a", "type": "sensor", "value_type": "float"}]}, "attrs[0].type"),
        ({"label": "t", "attrs": [{"label": "a", "type": "dynamic"}]}, "attrs[0].value_type"),
        (
            {
                "label": "t",
                "attrs": [
                    {"label": "a", "type": "dynamic", "value_type": "float"},
                    {"label": "a", "type": "actuator", "value_type": "float"},
                ],
            },
            "'a' is repeated",
        ),
    ],
    ids=[
        "missing-label",
        "empty-label",
        "label-not-string",
        "label-too-long",
        "attrs-not-list",
        "attr-not-object",
        "attr-no-label",
        "attr-bad-type",
        "attr-no-value-type",
        "attr-repeated",
    ],
)
def test_template_spec_rejects(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Invalid) as err:
        TemplateSpec.parse(body)
    assert fragment in err.value.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"label": "d", "templates": ["1"]}, DeviceSpec("d", (1,))),
        ({"label": "d", "templates": [1, 2, 1]}, DeviceSpec("d", (1, 2))),
        ({"label": "d", "templates": [], "attrs": []}, DeviceSpec("d", (), overrides=())),
        (
            {"label": "d", "templates": [1], "attrs": {"1": [{"id": 2, "label": "serial", "static_value": "x"}]}},
            DeviceSpec("d", (1,), overrides=(OverrideSpec(2, 1, "x"),)),
        ),
        (
            {
                "label": "d",
                "templates": [1],
                "attrs": [
                    {
                        "template_id": "1",
                        "id": 2,
                        "label": "serial",
                        "static_value": "x",
                        "metadata": [{"id": 3, "static_value": "y"}],
                    }
                ],
            },
            DeviceSpec("d", (1,), overrides=(OverrideSpec(2, 1, "x", ((3, "y"),)),)),
        ),
        (
            {
                "label": "d",
                "templates": [1],
                "attrs": [{"label": "serial", "static_value": 7, "metadata": [{"id": 9}]}],
            },
            DeviceSpec("d", (1,), overrides=(OverrideSpec("serial", None, 7, ((9, None),)),)),
        ),
        ({"label": "d", "templates": [1], "id": "68FD31"}, DeviceSpec("d", (1,), "68fd31")),
        ({"label": "d", "templates": [1], "disabled": True}, DeviceSpec("d", (1,), disabled=True)),
        ({"label": "d", "templates": [1], "disabled": False}, DeviceSpec("d", (1,), disabled=False)),
    ],
    ids=[
        "string-id",
        "int-ids-deduplicated",
        "empty-overrides",
        "dojot-overrides",
        "dojot-list-overrides",
        "list-overrides",
        "explicit-id",
        "disabled",
        "enabled",
    ],
)
def test_device_spec_parses(body: dict[str, Any], expected: DeviceSpec) -> None:
    assert DeviceSpec.parse(body) == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"templates": [1]}, "label is required"),
        ({"label": "d"}, "templates is required"),
        ({"label": "d", "templates": "1"}, "templates is required"),
        ({"label": "d", "templates": [True]}, "template ids"),
        ({"label": "d", "templates": [0]}, "template ids"),
        ({"label": "d", "templates": [1], "attrs": "x"}, "attrs must map template ids"),
        ({"label": "d", "templates": [1], "attrs": {"one": []}}, "Unknown template 'one' in attr list"),
        ({"label": "d", "templates": [1], "attrs": {"1": [{"static_value": "x"}]}}, "missing label attribute"),
        ({"label": "d", "templates": [1], "attrs": [{"id": 2, "static_value": "x"}]}, "missing label attribute"),
        ({"label": "d", "templates": [1], "attrs": {"1": [{"label": 3}]}}, "by id (or label)"),
        ({"label": "d", "templates": [1], "attrs": {"1": [{"id": "x", "label": "a"}]}}, "Unknown attribute 'x'"),
        (
            {"label": "d", "templates": [1], "attrs": [{"template_id": "x", "id": 2, "label": "a"}]},
            "Unknown template 'x' in attr list",
        ),
        ({"label": "d", "templates": [1], "id": "g1"}, "hexadecimal"),
        ({"label": "d", "templates": [1], "id": "1234567"}, "hexadecimal"),
        (
            {"label": "d", "templates": [1], "disabled": "true"},
            'disabled must be a JSON boolean (true or false), got "true"',
        ),
        ({"label": "d", "templates": [1], "disabled": 1}, "disabled must be a JSON boolean (true or false), got 1"),
        (
            {"label": "d", "templates": [1], "disabled": None},
            "disabled must be a JSON boolean (true or false), got null",
        ),
        ({"label": "d", "templates": [1], "disabled": ["x" * 100]}, "..."),
    ],
    ids=[
        "no-label",
        "no-templates",
        "templates-not-list",
        "bool-id",
        "zero-id",
        "overrides-not-object",
        "overrides-bad-template",
        "override-without-label",
        "list-override-without-label",
        "override-label-not-string",
        "override-bad-id",
        "list-override-bad-template",
        "bad-hex",
        "too-long",
        "disabled-string",
        "disabled-number",
        "disabled-null",
        "disabled-long-value-shortened",
    ],
)
def test_device_spec_rejects(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Invalid) as err:
        DeviceSpec.parse(body)
    assert fragment in err.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(1, 1), ("42", 42), ("0", None), (-1, None), ("x", None), (True, None), (1.5, None), ("9" * 30, None)],
    ids=["int", "string", "zero", "negative", "text", "bool", "float", "huge"],
)
def test_template_id(raw: object, expected: int | None) -> None:
    assert template_id(raw) == expected


@pytest.mark.parametrize(
    "body",
    [{}, {"attrs": {}}, {"attrs": []}, {"attrs": "fan"}, {"fan": 1}],
    ids=["empty", "empty-attrs", "list", "string", "no-attrs-key"],
)
def test_actuation_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        parse_actuation(body)


def test_actuation_parses() -> None:
    assert parse_actuation({"attrs": {"fan": 100}}) == {"fan": 100}


def _thermometer() -> Template:
    return Template(
        1,
        "Thermometer Template",
        T0,
        (
            Attr(1, 1, "temperature", "dynamic", "float", T0),
            Attr(2, 1, "fan", "actuator", "float", T0),
            Attr(3, 1, "protocol", "meta", "string", T0, "mqtt"),
        ),
    )


def test_template_shape_follows_dojot() -> None:
    shape = _thermometer().to_dict()
    temperature = {
        "id": 1,
        "template_id": "1",
        "label": "temperature",
        "type": "dynamic",
        "value_type": "float",
        "created": "2018-01-25T12:30:42.164695+00:00",
    }
    assert shape["id"] == 1
    assert shape["created"] == "2018-01-25T12:30:42.164695+00:00"
    assert shape["attrs"][0] == temperature
    assert [a["label"] for a in shape["attrs"]] == ["temperature", "fan", "protocol"]
    assert [a["label"] for a in shape["data_attrs"]] == ["temperature", "fan"]
    assert [a["label"] for a in shape["config_attrs"]] == ["protocol"]
    assert shape["config_attrs"][0]["static_value"] == "mqtt"


def test_device_shape_follows_dojot() -> None:
    device = Device("0998", "device_0", T0, (_thermometer(),))
    shape = device.to_dict()
    assert set(shape) == {"id", "label", "created", "templates", "attrs", "disabled"}
    assert shape["disabled"] is False
    assert Device("0998", "d", T0, disabled=True).to_dict()["disabled"] is True
    assert shape["templates"] == [1]
    assert list(shape["attrs"]) == ["1"]
    assert [a["label"] for a in shape["attrs"]["1"]] == ["temperature", "fan", "protocol"]
    assert [a["is_static_overridden"] for a in shape["attrs"]["1"]] == [False, False, False]
    assert device.actuators() == {"fan"}


def test_device_overrides_and_metadata_render() -> None:
    unit = Meta(4, "unit", "meta", "string", T0, "C")
    serial = Attr(5, 1, "serial", "static", "string", T0, "none", (unit,))
    template = Template(1, "t", T0, (serial,))
    shape = Device("0998", "d", T0, (template,), {5: "sn-1", 4: "K"}).to_dict()
    [attr] = shape["attrs"]["1"]
    assert attr["static_value"] == "sn-1" and attr["is_static_overridden"] is True
    assert attr["metadata"] == [
        {
            "id": 4,
            "label": "unit",
            "type": "meta",
            "value_type": "string",
            "created": "2018-01-25T12:30:42.164695+00:00",
            "static_value": "K",
            "is_static_overridden": True,
        }
    ]
    # the template itself is unchanged, and has no device-only keys
    assert template.to_dict()["attrs"][0]["static_value"] == "none"
    assert "is_static_overridden" not in template.to_dict()["attrs"][0]
    assert "is_static_overridden" not in template.to_dict()["attrs"][0]["metadata"][0]


@pytest.mark.parametrize(
    ("fmt", "keys"),
    [
        ("both", {"attrs", "data_attrs", "config_attrs"}),
        ("single", {"attrs"}),
        ("split", {"data_attrs", "config_attrs"}),
    ],
    ids=["both", "single", "split"],
)
def test_attr_format(fmt: str, keys: set[str]) -> None:
    shape = _thermometer().to_dict(parse_attr_format(fmt))
    assert set(shape) - {"id", "label", "created"} == keys


def test_attr_format_rejects() -> None:
    assert parse_attr_format(None) == "both"
    with pytest.raises(Invalid) as err:
        parse_attr_format("all")
    assert "single" in err.value.message


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, Filter()),
        ({"label": "kit", "attrs": ["serial=a=b", "x="]}, Filter("kit", (("serial", "a=b"), ("x", "")))),
        ({"template": "3", "attr_type": "geo:point"}, Filter(template=3, attr_type="geo:point")),
        ({"sort_by": "label"}, Filter(sort="label")),
        ({"sort_by": "desc:created"}, Filter(sort="created", descending=True)),
        ({"sort_by": "asc:id"}, Filter(sort="id")),
        ({"disabled": "true"}, Filter(disabled=True)),
        ({"disabled": "false"}, Filter(disabled=False)),
        ({"disabled": ""}, Filter()),
    ],
    ids=[
        "nothing",
        "label-and-attrs",
        "template-and-type",
        "sort",
        "sort-desc",
        "sort-asc",
        "only-disabled",
        "only-enabled",
        "disabled-empty",
    ],
)
def test_filter_parses(kwargs: dict[str, Any], expected: Filter) -> None:
    args: dict[str, Any] = {"label": None, "attrs": [], "attr_type": None, "template": None, "sort_by": None}
    assert Filter.parse(**{**args, **kwargs}) == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"attrs": ["serial"]}, "attr must be"),
        ({"attrs": ["=x"]}, "attr must be"),
        ({"template": "x"}, "template must be"),
        ({"sort_by": "color"}, "sortBy must be"),
        ({"sort_by": "up:label"}, "sortBy must be"),
        ({"disabled": "maybe"}, "query parameter disabled must be true or false"),
    ],
    ids=["attr-no-equals", "attr-no-label", "template-not-id", "sort-unknown", "sort-bad-direction", "disabled-bad"],
)
def test_filter_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {"label": None, "attrs": [], "attr_type": None, "template": None, "sort_by": None}
    with pytest.raises(Invalid) as err:
        Filter.parse(**{**args, **kwargs})
    assert fragment in err.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, False), ("", False), ("true", True), ("True", True), ("1", True), ("false", False)],
    ids=["absent", "empty", "true", "capital", "one", "false"],
)
def test_parse_bool(raw: str | None, expected: bool) -> None:
    assert parse_bool(raw, "idsOnly") is expected


def test_parse_bool_rejects() -> None:
    with pytest.raises(Invalid) as err:
        parse_bool("maybe", "idsOnly")
    assert "idsOnly" in err.value.message


def test_template_metadata_parses() -> None:
    spec = TemplateSpec.parse(
        {
            "label": "t",
            "attrs": [
                {
                    "label": "temperature",
                    "type": "dynamic",
                    "value_type": "float",
                    "metadata": [{"label": "unit", "value_type": "string", "static_value": "C"}],
                }
            ],
        }
    )
    assert spec.attrs[0].metadata == (MetaSpec("unit", "meta", "string", "C"),)


def test_metadata_take_any_type_attributes_do_not() -> None:
    metadata = [
        {"label": "path", "type": "lwm2m", "value_type": "string", "static_value": "/3303/0/5700"},
        {"label": "map", "type": "mapping", "value_type": "string"},
        {"label": "unit", "type": "x" * 32, "value_type": "string"},
    ]
    body = {"label": "t", "attrs": [{"label": "a", "type": "dynamic", "value_type": "float", "metadata": metadata}]}
    assert [m.type for m in TemplateSpec.parse(body).attrs[0].metadata] == ["lwm2m", "mapping", "x" * 32]
    for bad in ("", "  ", 7, None, "x" * 33):
        wrong = {**body, "attrs": [{**body["attrs"][0], "metadata": [{**metadata[0], "type": bad}]}]}
        with pytest.raises(Invalid) as err:
            TemplateSpec.parse(wrong)
        assert "attrs[0].metadata[0].type must be a non-empty string" in err.value.message
    with pytest.raises(Invalid) as err:
        TemplateSpec.parse({"label": "t", "attrs": [{"label": "a", "type": "lwm2m", "value_type": "float"}]})
    assert "attrs[0].type must be one of dynamic, static, actuator, meta" in err.value.message


def test_dojot_error_bodies() -> None:
    assert TemplateNotFound(999).to_dict() == {"error": "not_found", "message": "No such template: 999", "status": 404}
    assert TemplatesInUse(["aa"], 1).to_dict() == {
        "error": "invalid",
        "message": "Templates cannot be removed as they are being used by devices",
        "status": 400,
        "details": {"devices": ["aa"], "device_count": 1},
    }
    assert MissingLabel("attrs[0]").to_dict() == {
        "error": "invalid",
        "message": ["missing label attribute"],
        "status": 400,
    }


def test_split_attrs_are_accepted() -> None:
    spec = TemplateSpec.parse(
        {
            "label": "t",
            "data_attrs": [{"label": "a", "type": "dynamic", "value_type": "float"}],
            "config_attrs": [{"label": "p", "type": "meta", "value_type": "string"}],
        }
    )
    assert [a.label for a in spec.attrs] == ["a", "p"]


def test_iso_renders_utc_with_microseconds() -> None:
    assert iso(datetime(2020, 1, 1, tzinfo=UTC)) == "2020-01-01T00:00:00.000000+00:00"


@pytest.mark.parametrize(
    ("page", "size", "total", "expected"),
    [
        (1, 20, 0, {"page": 1, "total": 0, "has_next": False, "next_page": None, "total_items": 0}),
        (1, 20, 1, {"page": 1, "total": 1, "has_next": False, "next_page": None, "total_items": 1}),
        (1, 2, 3, {"page": 1, "total": 2, "has_next": True, "next_page": 2, "total_items": 3}),
        (2, 2, 4, {"page": 2, "total": 2, "has_next": False, "next_page": None, "total_items": 4}),
    ],
    ids=["empty", "one", "first-of-two", "last"],
)
def test_pagination(page: int, size: int, total: int, expected: dict[str, Any]) -> None:
    assert Page([], page, size, total).pagination() == expected


@pytest.mark.parametrize(
    ("page", "size", "fragment"),
    [(0, 20, "greater than 1"), (1, 0, "At least one"), (1, 1001, "at most")],
    ids=["page-zero", "size-zero", "size-too-big"],
)
def test_page_request_rejects(page: int, size: int, fragment: str) -> None:
    with pytest.raises(Invalid) as err:
        PageRequest(page, size)
    assert fragment in err.value.message
