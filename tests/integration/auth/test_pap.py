"""The policy administration point in dojot's paths: groups, permissions, relations and reports."""

import pytest

pytestmark = pytest.mark.integration


def test_groups_crud_and_search(auth):
    _, boss = auth.new_tenant()
    r = auth.call("POST", "/pap/group", boss, json={"name": "operators", "description": "night shift"})
    assert r.status_code == 200 and r.get_json()["status"] == 200
    gid = r.get_json()["id"]
    assert auth.call("GET", f"/pap/group/{gid}", boss).get_json() == {
        "id": gid,
        "name": "operators",
        "description": "night shift",
    }
    assert auth.call("GET", "/pap/group/operators", boss).get_json()["id"] == gid
    found = auth.call("GET", "/pap/group?name=erat", boss).get_json()["groups"]
    assert [g["name"] for g in found] == ["operators"]
    assert auth.call("GET", "/pap/group?name=zzz", boss).status_code == 404
    assert auth.call("GET", "/pap/group?name=%25", boss).status_code == 404  # LIKE wildcards are literal
    assert auth.call("POST", "/pap/group", boss, json={"name": "operators"}).status_code == 409

    assert auth.call("PUT", f"/pap/group/{gid}", boss, json={"name": "ops"}).status_code == 200
    assert auth.call("GET", f"/pap/group/{gid}", boss).get_json() == {
        "id": gid,
        "name": "ops",
        "description": "night shift",
    }
    assert auth.call("DELETE", f"/pap/group/{gid}", boss).status_code == 200
    assert auth.call("GET", f"/pap/group/{gid}", boss).status_code == 404


def test_default_profiles_are_editable_but_admin_stays(auth):
    tenant, boss = auth.new_tenant()
    assert auth.call("PUT", "/pap/group/user", boss, json={"description": "readers"}).status_code == 200
    assert auth.call("GET", "/pap/group/user", boss).get_json()["description"] == "readers"
    r = auth.call("PUT", "/pap/group/admin", boss, json={"name": "root"})
    assert r.status_code == 400 and "renamed" in r.get_json()["message"]
    assert auth.call("DELETE", "/pap/group/admin", boss).status_code == 400
    auth.new_user(boss, "hal")
    r = auth.call("DELETE", "/pap/group/user", boss)
    assert r.status_code == 409 and "profile" in r.get_json()["message"]
    # Renaming a profile group carries its users' profile along.
    assert auth.call("PUT", "/pap/group/user", boss, json={"name": "viewer"}).status_code == 200
    assert auth.call("GET", "/user/hal", boss).get_json()["user"]["profile"] == "viewer"
    hal = auth.login("hal", "user-pass-123", tenant)
    assert auth.gateway(hal, "GET", "/device").status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "x", "path": "/(", "method": "GET", "permission": "permit"}, "regular expression"),
        ({"name": "x", "path": "/x", "method": "GET", "permission": "maybe"}, "permit"),
        ({"name": "x", "path": "/x", "method": "GET"}, "permit"),
        ({"path": "/x", "method": "GET", "permission": "permit"}, "group names"),
        ({"name": "x", "path": "/x", "method": "GET", "permission": "permit", "type": "system"}, "api"),
        ({"name": "x", "path": 5, "method": "GET", "permission": "permit"}, "path"),
    ],
    ids=["bad-regex", "bad-decision", "no-decision", "no-name", "system", "path-type"],
)
def test_bad_permissions_are_400(auth, body, fragment):
    _, boss = auth.new_tenant()
    r = auth.call("POST", "/pap/permission", boss, json=body)
    assert r.status_code == 400 and fragment in r.get_json()["message"]


def test_permissions_crud_and_filters(auth):
    _, boss = auth.new_tenant()
    body = {"name": "write_flows", "path": "/flows/(.*)", "method": "POST|PUT|DELETE", "permission": "permit"}
    r = auth.call("POST", "/pap/permission", boss, json=body)
    assert r.status_code == 200
    pid = r.get_json()["id"]
    assert auth.call("GET", f"/pap/permission/{pid}", boss).get_json() == {**body, "id": pid, "type": "api"}
    found = auth.call("GET", "/pap/permission?method=POST|PUT|DELETE&permission=permit", boss).get_json()["permissions"]
    assert [p["id"] for p in found] == [pid]
    assert auth.call("GET", "/pap/permission?path=/nothing", boss).status_code == 404
    assert auth.call("GET", "/pap/permission?colour=red", boss).status_code == 400
    assert auth.call("POST", "/pap/permission", boss, json=body).status_code == 409
    assert auth.call("PUT", f"/pap/permission/{pid}", boss, json={**body, "permission": "deny"}).status_code == 200
    assert auth.call("GET", f"/pap/permission/{pid}", boss).get_json()["permission"] == "deny"
    assert auth.call("PUT", f"/pap/permission/{pid}", boss, json={**body, "name": "read_all"}).status_code == 409
    assert auth.call("GET", "/pap/permission/write_flows", boss).status_code == 400  # by id only
    assert auth.call("DELETE", f"/pap/permission/{pid}", boss).status_code == 200
    assert auth.call("GET", f"/pap/permission/{pid}", boss).status_code == 404
    assert auth.call("DELETE", f"/pap/permission/{pid}", boss).status_code == 404


def test_relations_and_reports(auth):
    tenant, boss = auth.new_tenant()
    uid = auth.new_user(boss, "ivy")
    gid = auth.call("POST", "/pap/group", boss, json={"name": "flowers"}).get_json()["id"]
    p_group = auth.call(
        "POST",
        "/pap/permission",
        boss,
        json={"name": "flows", "path": "/flows(/.*)?", "method": "(.*)", "permission": "permit"},
    ).get_json()["id"]
    p_user = auth.call(
        "POST",
        "/pap/permission",
        boss,
        json={"name": "no_history", "path": "/history(/.*)?", "method": "(.*)", "permission": "deny"},
    ).get_json()["id"]

    assert auth.call("POST", f"/pap/usergroup/{uid}/{gid}", boss).get_json() == {"status": 200, "message": "ok"}
    assert auth.call("POST", f"/pap/usergroup/ivy/{gid}", boss).status_code == 200  # idempotent, by username
    assert auth.call("POST", f"/pap/grouppermissions/{gid}/{p_group}", boss).status_code == 200
    assert auth.call("POST", f"/pap/userpermissions/{uid}/{p_user}", boss).status_code == 200

    direct = auth.call("GET", "/pap/user/ivy/directpermissions", boss).get_json()["permissions"]
    assert [p["id"] for p in direct] == [p_user]
    every = {p["name"] for p in auth.call("GET", f"/pap/user/{uid}/allpermissions", boss).get_json()["permissions"]}
    assert every == {"no_history", "flows", "read_all", "actuate_devices", "no_access_control"}
    groups = auth.call("GET", "/pap/user/ivy/groups", boss).get_json()["groups"]
    assert {g["name"] for g in groups} == {"user", "flowers"}
    users = auth.call("GET", "/pap/group/flowers/users", boss).get_json()["users"]
    assert [u["username"] for u in users] == ["ivy"] and users[0]["service"] == tenant
    perms = auth.call("GET", f"/pap/group/{gid}/permissions", boss).get_json()["permissions"]
    assert [p["name"] for p in perms] == ["flows"]

    ivy = auth.login("ivy", "user-pass-123", tenant)
    assert auth.decision(ivy, "POST", "/flows/v1/flow") == "permit"
    assert auth.decision(ivy, "GET", "/history/device/x/history") == "deny"

    assert auth.call("DELETE", f"/pap/usergroup/ivy/{gid}", boss).status_code == 200
    assert auth.call("DELETE", f"/pap/userpermissions/ivy/{p_user}", boss).status_code == 200
    assert auth.call("DELETE", f"/pap/grouppermissions/{gid}/{p_group}", boss).status_code == 200
    assert auth.call("GET", "/pap/group/flowers/users", boss).get_json()["users"] == []
    assert auth.decision(ivy, "POST", "/flows/v1/flow") == "deny"
    assert auth.decision(ivy, "GET", "/history/device/x/history") == "permit"

    r = auth.call("DELETE", "/pap/usergroup/ivy/user", boss)
    assert r.status_code == 400 and "profile" in r.get_json()["message"]
    for path in (
        f"/pap/usergroup/nobody/{gid}",
        "/pap/usergroup/ivy/nogroup",
        f"/pap/grouppermissions/{gid}/999999",
        "/pap/userpermissions/ivy/999999",
        "/pap/user/nobody/groups",
        "/pap/group/nogroup/users",
    ):
        method = "GET" if "/groups" in path or "/users" in path else "POST"
        assert auth.call(method, path, boss).status_code == 404, path


def test_plain_users_cannot_administer_access_control(auth):
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "joe")
    joe = auth.login("joe", "user-pass-123", tenant)
    for method, path, body in [
        ("GET", "/user", None),
        ("POST", "/user", {"username": "sneaky", "passwd": "sneaky-pass-1"}),
        ("GET", "/user/joe", None),
        ("PUT", "/user/joe", {"profile": "admin"}),
        ("DELETE", f"/user/{tenant}-admin", None),
        ("GET", "/pap/group", None),
        ("POST", "/pap/group", {"name": "mine"}),
        ("POST", "/pap/permission", {"name": "all", "path": "/(.*)", "method": "(.*)", "permission": "permit"}),
        ("POST", "/pap/usergroup/joe/admin", None),
        ("GET", "/pap/user/joe/allpermissions", None),
        ("POST", f"/password/reset/{tenant}-admin", None),
    ]:
        r = auth.call(method, path, joe, json=body)
        assert r.status_code == 403, (method, path, r.get_json())
        assert r.get_json()["error"] == "forbidden"
    assert auth.call("GET", "/user/joe", boss).get_json()["user"]["profile"] == "user"
