"""The decision rules and the path normalisation of the PDP."""

import pytest

from auth.models import Permission
from auth.pdp import DENY, PERMIT, decide, normalize_method, normalize_path
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


@pytest.mark.parametrize("raw", ["", None, 5, "/a%ff", "/a%00b", "/" + "x" * 5000], ids=str)
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
