"""The import document's validation (no I/O): every problem is listed, exports parse back unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from device_manager.models import Attr, Device, Meta, Template
from device_manager.service import Configuration
from device_manager.transfer import MAX_PROBLEMS, InvalidImport, body_problem, check_body, parse_configuration

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T1 = datetime(2026, 2, 3, 4, 5, 6, 654321, tzinfo=UTC)


def _config() -> Configuration:
    unit = Meta(3, "unit", "meta", "string", T0, "C", T1)
    temp = Attr(1, 7, "temperature", "dynamic", "float", T0, None, (unit,), T1)
    serial = Attr(2, 7, "serial", "static", "string", T0, "none")
    template = Template(7, "sensor", T0, (temp, serial), T1)
    device = Device("0a0b", "d", T0, (template,), {2: "sn-1", 3: "F"}, T1, True)
    return Configuration([template], [device])


def _problems(doc: Any) -> list[str]:
    with pytest.raises(InvalidImport) as info:
        parse_configuration(doc, T0)
    body = info.value.to_dict()
    assert body["error"] == "invalid" and body["status"] == 400
    return body["details"]["problems"]  # type: ignore[no-any-return]


def test_an_export_parses_back_to_the_same_configuration() -> None:
    config = _config()
    doc = config.to_document()
    assert parse_configuration(doc, T0) == config
    assert parse_configuration(doc, T0).to_document() == doc


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({}, ["templates: required (a list; [] for none)", "devices: required (a list; [] for none)"]),
        (
            {"label": "x", "attrs": []},
            [
                "templates: required (a list; [] for none)",
                "devices: required (a list; [] for none)",
                "unknown top-level key(s) 'attrs', 'label'; the document has templates and devices",
            ],
        ),
        ({"templates": [], "devices": [], "flows": [1]}, ["flows cannot be imported by this version"]),
        ({"templates": [], "devices": [], "flows": [], "cronJobs": None}, []),
    ],
)
def test_top_level(doc: dict[str, Any], expected: list[str]) -> None:
    if not expected:
        assert parse_configuration(doc, T0) == Configuration([], [])
        return
    problems = _problems(doc)
    assert len(problems) == len(expected)
    for p, e in zip(problems, expected, strict=True):
        assert p.startswith(e), (p, e)


def test_every_problem_deep_inside_is_listed() -> None:
    doc = _config().to_document()
    doc["templates"][0]["attrs"][0]["type"] = "x"
    doc["templates"][0]["attrs"][1]["colour"] = "red"
    doc["templates"][0]["attrs"][0]["metadata"][0]["what"] = 1
    doc["devices"][0]["attrs"]["7"][1]["note"] = 1
    doc["devices"].append({"id": "0c", "label": "e", "templates": [99]})
    problems = _problems(doc)
    assert problems == [
        "templates[0].attrs[0].metadata[0]: unknown key(s) 'what'",
        "templates[0].attrs[1]: unknown key(s) 'colour'",
        "templates[0].attrs[0].type must be one of dynamic, static, actuator, meta; got 'x'",
        "devices[0].attrs['7'][1]: unknown key(s) 'note'",
        "devices[1] (0c) uses template 99, which is not in templates",
    ]


def test_a_device_of_an_invalid_template_is_not_reported_twice() -> None:
    doc = _config().to_document()
    doc["templates"][0]["label"] = ""
    assert _problems(doc) == ["templates[0]: label is required and must be a non-empty string"]


def test_the_list_of_problems_is_bounded() -> None:
    doc = {"templates": [{"id": i, "label": ""} for i in range(1, 300)], "devices": []}
    problems = _problems(doc)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == "... and 199 more problems"


def test_bodies_that_are_not_documents() -> None:
    for raw, fragment in [(b"", "needs a JSON body"), (b"\xef\xbb\xbf{}", "byte-order mark")]:
        with pytest.raises(InvalidImport) as info:
            check_body(raw)
        assert fragment in info.value.problems[0]
    check_body(b"{}")
    assert "truncated" in body_problem(b'{"templates": [', "x")
    assert "truncated" in body_problem(b'{"templates": [], "devices": [], "a": "b', "x")
    assert body_problem(b'{"a" 1}', "x").startswith("the body is not valid JSON: Expecting ':' delimiter")
    assert body_problem(b"[]", "the request body must be a JSON object") == "the request body must be a JSON object"
    assert body_problem(b"[" * 100_000, "too deep") == "too deep"
