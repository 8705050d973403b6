"""Tenant isolation of every auth route: an administrator of tenant A can neither list, read, change nor delete
users, groups or permissions of tenant B, by id or by name, and learns nothing about which usernames B has."""

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_tenants(auth):
    tenant_a, boss_a = auth.new_tenant()
    tenant_b, boss_b = auth.new_tenant()
    b_user = auth.new_user(boss_b, "victim")
    b_group = auth.call("POST", "/pap/group", boss_b, json={"name": "bgroup"}).get_json()["id"]
    b_perm = auth.call(
        "POST", "/pap/permission", boss_b, json={"name": "bperm", "path": "/x", "method": "GET", "permission": "permit"}
    ).get_json()["id"]
    return {
        "a": (tenant_a, boss_a),
        "b": (tenant_b, boss_b),
        "b_user": b_user,
        "b_group": b_group,
        "b_perm": b_perm,
        "b_admin": f"{tenant_b}-admin",
    }


def test_lists_show_only_the_own_tenant(auth, two_tenants):
    tenant_a, boss_a = two_tenants["a"]
    users = auth.call("GET", "/user", boss_a).get_json()["users"]
    assert {u["service"] for u in users} == {tenant_a}
    groups = auth.call("GET", "/pap/group", boss_a).get_json()["groups"]
    assert "bgroup" not in {g["name"] for g in groups}
    assert two_tenants["b_group"] not in {g["id"] for g in groups}
    perms = auth.call("GET", "/pap/permission", boss_a).get_json()["permissions"]
    assert two_tenants["b_perm"] not in {p["id"] for p in perms}
    assert auth.call("GET", "/pap/permission?name=bperm", boss_a).status_code == 404
    assert auth.call("GET", "/pap/group?name=bgroup", boss_a).status_code == 404


def routes(t):
    u, g, p, adm = t["b_user"], t["b_group"], t["b_perm"], t["b_admin"]
    return [
        ("GET", f"/user/{u}", None),
        ("GET", "/user/victim", None),
        ("GET", f"/user/{adm}", None),
        ("PUT", f"/user/{u}", {"name": "pwned"}),
        ("PUT", "/user/victim", {"profile": "admin"}),
        ("DELETE", f"/user/{u}", None),
        ("DELETE", "/user/victim", None),
        ("POST", "/password/reset/victim", None),
        ("POST", f"/password/reset/{u}", None),
        ("GET", f"/pap/group/{g}", None),
        ("GET", "/pap/group/bgroup", None),
        ("PUT", f"/pap/group/{g}", {"description": "pwned"}),
        ("DELETE", f"/pap/group/{g}", None),
        ("GET", f"/pap/permission/{p}", None),
        ("PUT", f"/pap/permission/{p}", {"name": "bperm", "path": "/(.*)", "method": "(.*)", "permission": "permit"}),
        ("DELETE", f"/pap/permission/{p}", None),
        ("POST", f"/pap/usergroup/{u}/admin", None),
        ("POST", f"/pap/usergroup/victim/{g}", None),
        ("DELETE", f"/pap/usergroup/{u}/{g}", None),
        ("POST", f"/pap/userpermissions/{u}/{p}", None),
        ("POST", "/pap/userpermissions/victim/all_access", None),
        ("POST", f"/pap/grouppermissions/{g}/{p}", None),
        ("POST", f"/pap/grouppermissions/admin/{p}", None),
        ("GET", f"/pap/user/{u}/directpermissions", None),
        ("GET", "/pap/user/victim/allpermissions", None),
        ("GET", f"/pap/user/{u}/groups", None),
        ("GET", f"/pap/group/{g}/permissions", None),
        ("GET", "/pap/group/bgroup/users", None),
    ]


def test_every_route_treats_other_tenants_rows_as_missing(auth, two_tenants):
    _, boss_a = two_tenants["a"]
    tenant_b, boss_b = two_tenants["b"]
    for method, path, body in routes(two_tenants):
        r = auth.call(method, path, boss_a, json=body)
        assert r.status_code in (400, 404), (method, path, r.status_code, r.get_json())
        text = r.get_data(as_text=True)
        assert tenant_b not in text and "victim" not in text and "bgroup" not in text, (method, path, text)
    # Nothing of B changed.
    victim = auth.call("GET", "/user/victim", boss_b).get_json()["user"]
    assert victim["name"] == "" and victim["profile"] == "user"
    assert auth.call("GET", "/pap/group/bgroup", boss_b).get_json()["description"] == ""
    assert auth.call("GET", f"/pap/permission/{two_tenants['b_perm']}", boss_b).get_json()["path"] == "/x"
    assert auth.call("GET", "/pap/user/victim/groups", boss_b).get_json()["groups"] == [
        {"id": auth.call("GET", "/pap/group/user", boss_b).get_json()["id"], "name": "user"}
    ]
    assert auth.call("GET", "/pap/user/victim/directpermissions", boss_b).get_json()["permissions"] == []


def test_a_missing_row_and_another_tenants_row_answer_the_same(auth, two_tenants):
    _, boss_a = two_tenants["a"]
    other = auth.call("GET", f"/user/{two_tenants['b_user']}", boss_a)
    missing = auth.call("GET", "/user/999999999", boss_a)
    assert (other.status_code, other.get_json()) == (missing.status_code, missing.get_json())
    other = auth.call("GET", "/user/victim", boss_a)
    missing = auth.call("GET", "/user/neverexisted", boss_a)
    assert (other.status_code, other.get_json()) == (missing.status_code, missing.get_json())


def test_usernames_of_other_tenants_do_not_show(auth, two_tenants):
    """Creating a user named like one of B's behaves exactly like a new name: usernames are per tenant."""
    tenant_a, boss_a = two_tenants["a"]
    taken_in_b = auth.call("POST", "/user", boss_a, json={"username": "victim", "passwd": "mine-pass-123"})
    fresh = auth.call("POST", "/user", boss_a, json={"username": "brandnew", "passwd": "mine-pass-123"})
    assert taken_in_b.status_code == fresh.status_code == 200
    assert taken_in_b.get_json()[0]["message"] == fresh.get_json()[0]["message"]
    assert auth.login("victim", "mine-pass-123", tenant_a)
    # Naming another tenant in the body is refused the same way whether that tenant exists or not.
    exists = auth.call("POST", "/user", boss_a, json={"username": "x1", "service": two_tenants["b"][0]})
    absent = auth.call("POST", "/user", boss_a, json={"username": "x1", "service": "tnosuchtenant"})
    assert (exists.status_code, exists.get_json()) == (absent.status_code, absent.get_json())


def test_revocation_stays_within_the_tenant(auth, two_tenants):
    tenant_b, _ = two_tenants["b"]
    _, boss_a = two_tenants["a"]
    b_token = auth.login("victim", "user-pass-123", tenant_b)
    r = auth.call("POST", "/revoke", boss_a, json={"jwt": b_token})
    assert r.status_code == 403
    other = auth.call("POST", "/revoke", boss_a, json={"username": "nosuchuser"})
    assert (
        auth.call("POST", "/revoke", boss_a, json={"username": two_tenants["b_admin"]}).get_json() == other.get_json()
    )
    assert auth.gateway(b_token, "GET", "/device").status_code == 200


def test_tenant_admins_cannot_reach_the_tenant_routes(auth, two_tenants):
    _, boss_a = two_tenants["a"]
    tenant_b, _ = two_tenants["b"]
    assert auth.call("DELETE", f"/tenants/{tenant_b}", boss_a).status_code == 403
    assert auth.call("DELETE", "/tenants/tnosuchtenant", boss_a).status_code == 403
