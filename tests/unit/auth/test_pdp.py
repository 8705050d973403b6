"""The decision rules and the path normalisation of the PDP."""

import pytest

from auth.models import Permission
from auth.pdp import (
    DENY,
    PERMIT,
    decide,
    header_safe,
    normalize_method,
    normalize_path,
    refuse_control_characters,
)
from ondas.errors import Invalid

pytestmark = pytest.mark.unit


def perm(path: str, method: str, decision: str = "permit") -> Permission:
    return Permission(id=1, service="t", name="p", path=path, method=method, permission=decision, type="api")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/device", "/device"),
        ("/device?page_num=2", "/device"),
        ("/device#frag", "/device"),
        ("/auth/%75ser", "/auth/user"),
        ("/auth//user", "/auth/user"),
        ("/auth/./user/", "/auth/user/"),
        ("/device/../auth/user", "/auth/user"),
        ("/../../etc", "/etc"),
        ("device", "/device"),
        ("/", "/"),
        ("/history/device/abc/history?lastN=1", "/history/device/abc/history"),
    ],
    ids=[
        "plain",
        "query",
        "fragment",
        "escape",
        "double-slash",
        "dot",
        "dot-dot",
        "above-root",
        "relative",
        "root",
        "history",
    ],
)
def test_normalize_path(raw, expected):
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", ["", None, 5, "/a%ff", "/a%00b", "/a\x00b", "/" + "x" * 5000], ids=repr)
def test_normalize_path_refuses_bad_resources(raw):
    with pytest.raises(Invalid):
        normalize_path(raw)


@pytest.mark.parametrize(("raw", "expected"), [("get", "GET"), (" POST ", "POST"), ("DELETE", "DELETE")])
def test_normalize_method(raw, expected):
    assert normalize_method(raw) == expected


@pytest.mark.parametrize("raw", ["", "GET /", "G3T", None, "X" * 20], ids=str)
def test_normalize_method_refuses_non_methods(raw):
    with pytest.raises(Invalid):
        normalize_method(raw)


CASES = [
    ("no permissions deny", [], "GET", "/device", DENY),
    ("permit applies", [perm("/device", "GET")], "GET", "/device", PERMIT),
    ("method must match whole", [perm("/device", "GET")], "GETX", "/device", DENY),
    ("path must match whole", [perm("/device", "GET")], "GET", "/device/1", DENY),
    ("prefix does not match", [perm("/dev", "GET")], "GET", "/device", DENY),
    ("regex path", [perm("/device/(.*)", "GET|PUT")], "PUT", "/device/abc/actuate", PERMIT),
    ("deny wins", [perm("/(.*)", "(.*)"), perm("/auth/user(/.*)?", "(.*)", "deny")], "GET", "/auth/user/1", DENY),
    ("deny elsewhere", [perm("/(.*)", "(.*)"), perm("/auth/user(/.*)?", "(.*)", "deny")], "GET", "/device", PERMIT),
    ("broken pattern ignored", [perm("/(", "GET")], "GET", "/(", DENY),
    ("sub-paths cover their collection", [perm("/template/(.*)", "(.*)")], "POST", "/template", PERMIT),
    ("collection rule needs the exact prefix", [perm("/template/(.*)", "(.*)")], "GET", "/templates", DENY),
    ("collection rule only for /(.*)", [perm("/template/[0-9]+", "GET")], "GET", "/template", DENY),
    ("collection rule checks the method", [perm("/template/(.*)", "GET")], "POST", "/template", DENY),
    ("collection deny", [perm("/(.*)", "(.*)"), perm("/auth/pap/(.*)", "(.*)", "deny")], "GET", "/auth/pap", DENY),
]


@pytest.mark.parametrize(("perms", "method", "path", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(perms, method, path, expected):
    assert decide(perms, method, path) == expected


@pytest.mark.parametrize("raw", ["/a%0ab", "/a%0Db", "/a%01", "/a%1f", "/a%7F", "/a\nb", "/a\tb"], ids=repr)
def test_the_gateways_question_refuses_control_characters(raw):
    with pytest.raises(Invalid, match="control characters in the path"):
        refuse_control_characters(normalize_path(raw))


@pytest.mark.parametrize("raw", ["/device/ab12", "/a%20b", "/a%250a", "/é"], ids=repr)
def test_the_gateways_question_takes_printable_paths(raw):
    refuse_control_characters(normalize_path(raw))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("your permissions do not allow GET /device", "your permissions do not allow GET /device"),
        ("a\nb\rc\x00d\x7f", "a%0Ab%0Dc%00d%7F"),
        ('say "hi" \\ 100%', "say 'hi' %5C 100%25"),
        ("é", "%C3%A9"),
    ],
    ids=["plain", "controls", "quotes", "non-ascii"],
)
def test_header_safe(text, expected):
    assert header_safe(text) == expected


def test_header_safe_bounds_the_length():
    out = header_safe("x" * 5000 + "\n")
    assert len(out) <= 300
    assert all(0x20 <= ord(c) <= 0x7E for c in out)
