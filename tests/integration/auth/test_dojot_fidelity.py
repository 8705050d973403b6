"""auth behaves as dojot's auth where clients depend on it: every tenant's permission catalogue has dojot's fixed
ids and names (so ``POST /auth/pap/grouppermissions/<group>/<id>`` grants what it grants in dojot), and the
platform's administrator creates users of a tenant with ``"service": "<tenant>"`` in ``POST /auth/user``."""

import jwt
import pytest

pytestmark = pytest.mark.integration

# dojot auth's catalogue (its initial database population): id -> (name, path, method). Written out here rather
# than imported, so the test checks the seeded rows against dojot and not against themselves.
DOJOT = {
    1: ("all_all", "/(.*)", "(.*)"),
    2: ("all_template", "/template/(.*)", "(.*)"),
    3: ("ro_template", "/template/(.*)", "GET"),
    4: ("all_device", "/device/(.*)", "(.*)"),
    5: ("ro_device", "/device/(.*)", "GET"),
    6: ("all_flows", "/flows/(.*)", "(.*)"),
    7: ("ro_flows", "/flows/(.*)", "GET"),
    8: ("ro_history", "/history/(.*)", "GET"),
    9: ("all_user", "/auth/user/(.*)", "(.*)"),
    10: ("ro_user", "/auth/user/(.*)", "GET"),
    11: ("all_pap", "/auth/pap/(.*)", "(.*)"),
    12: ("ro_pap", "/auth/pap/(.*)", "GET"),
    13: ("all_x509_ca", "/x509/v1/ca/(.*)", "(.*)"),
    14: ("ro_x509_ca", "/x509/v1/ca/(.*)", "GET"),
    15: ("all_x509_certificates", "/x509/v1/certificates/(.*)", "(.*)"),
    16: ("ro_x509_certificates", "/x509/v1/certificates/(.*)", "GET"),
    17: ("ro_socketio", "/stream/socketio/", "GET"),
    18: ("wo_import", "/import/(.*)", "POST"),
    19: ("ro_export", "/export/(.*)", "GET"),
    20: ("ro_image", "/fw-image/(.*)", "GET"),
    21: ("all_image", "/fw-image/(.*)", "(.*)"),
    22: ("ro_mqtt_metrics", "/iotagent-mqtt/metrics", "GET"),
}
# Ondas's own, after dojot's ids: the read-only profile of group "user".
ONDAS = {1000: "read_all", 1001: "actuate_devices", 1002: "no_access_control"}


def _catalogue(auth, token):
    r = auth.call("GET", "/pap/permission", token)
    assert r.status_code == 200, r.get_json()
    return {p["id"]: p for p in r.get_json()["permissions"]}


def test_every_tenant_has_dojots_ids_and_names(auth):
    _, boss_a = auth.new_tenant()
    _, boss_b = auth.new_tenant()
    # A permission of A's own does not shift anything in B.
    auth.call(
        "POST", "/pap/permission", boss_a, json={"name": "mine", "path": "/x", "method": "GET", "permission": "permit"}
    )
    cat_a, cat_b = _catalogue(auth, boss_a), _catalogue(auth, boss_b)
    for cat in (cat_a, cat_b):
        for pid, (name, path, method) in DOJOT.items():
            assert cat[pid] == {
                "id": pid,
                "name": name,
                "path": path,
                "method": method,
                "permission": "permit",
                "type": "system",
            }, pid
        assert {pid: cat[pid]["name"] for pid in ONDAS} == ONDAS
    assert set(cat_b) == set(DOJOT) | set(ONDAS)
    assert cat_a[23]["name"] == "mine" and cat_a[23]["type"] == "api"  # a tenant's own ids follow dojot's
    # One permission by dojot's id, and the search by name, answer the same in both tenants.
    for boss in (boss_a, boss_b):
        assert auth.call("GET", "/pap/permission/2", boss).get_json()["name"] == "all_template"
        found = auth.call("GET", "/pap/permission?name=all_device", boss).get_json()["permissions"]
        assert [p["id"] for p in found] == [4]
    # System permissions stay as dojot defines them.
    body = {"name": "all_template", "path": "/(.*)", "method": "(.*)", "permission": "permit"}
    assert auth.call("PUT", "/pap/permission/2", boss_a, json=body).status_code == 409
    assert auth.call("DELETE", "/pap/permission/2", boss_a).status_code == 409


def test_default_groups_and_their_grants(auth):
    _, boss = auth.new_tenant()
    groups = auth.call("GET", "/pap/group", boss).get_json()["groups"]
    assert [g["name"] for g in groups] == ["admin", "user"]
    assert all(set(g) == {"id", "name", "description"} for g in groups)
    admin = auth.call("GET", "/pap/group/admin/permissions", boss).get_json()["permissions"]
    assert [(p["id"], p["name"]) for p in admin] == [(1, "all_all")]
    user = auth.call("GET", "/pap/group/user/permissions", boss).get_json()["permissions"]
    assert [(p["id"], p["name"]) for p in user] == sorted(ONDAS.items())


def test_granting_dojots_id_2_gives_a_group_template_access(auth):
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "tina")
    gid = auth.call("POST", "/pap/group", boss, json={"name": "templaters"}).get_json()["id"]
    assert auth.call("POST", "/pap/usergroup/tina/templaters", boss).status_code == 200
    tina = auth.login("tina", "user-pass-123", tenant)
    writes = [("POST", "/template"), ("PUT", "/template/7"), ("DELETE", "/template/7")]
    assert [auth.decision(tina, m, p) for m, p in writes] == ["deny"] * 3

    r = auth.call("POST", "/pap/grouppermissions/templaters/2", boss)
    assert r.status_code == 200, r.get_json()
    assert [auth.decision(tina, m, p) for m, p in writes] == ["permit"] * 3
    assert auth.gateway(tina, "POST", "/template").status_code == 200
    assert auth.decision(tina, "POST", "/device") == "deny"  # only templates
    perms = auth.call("GET", f"/pap/group/{gid}/permissions", boss).get_json()["permissions"]
    assert [(p["id"], p["name"]) for p in perms] == [(2, "all_template")]

    assert auth.call("DELETE", f"/pap/grouppermissions/{gid}/2", boss).status_code == 200
    assert [auth.decision(tina, m, p) for m, p in writes] == ["deny"] * 3
    # Dojot's id 4 (all_device) by the group's id, too.
    assert auth.call("POST", f"/pap/grouppermissions/{gid}/4", boss).status_code == 200
    assert auth.decision(tina, "POST", "/device") == "permit"
    assert auth.decision(tina, "POST", "/template") == "deny"


def test_the_platform_admin_creates_users_in_a_tenant_by_service(auth):
    tenant_b, boss_b = auth.new_tenant()
    admin = auth.admin_token()
    r = auth.call(
        "POST",
        "/user",
        admin,
        json={"username": "bob", "passwd": "bob-pass-123", "service": tenant_b, "name": "Bob", "email": "b@x.io"},
    )
    assert r.status_code == 200, r.get_json()
    created = r.get_json()[0]
    assert created["user"]["service"] == tenant_b and created["user"]["profile"] == "user"
    bob = auth.login("bob", "bob-pass-123", tenant_b)
    assert jwt.decode(bob, options={"verify_signature": False})["service"] == tenant_b
    assert auth.gateway(bob, "GET", "/device").status_code == 200
    assert "bob" in {u["username"] for u in auth.call("GET", "/user", boss_b).get_json()["users"]}
    assert "bob" not in {u["username"] for u in auth.call("GET", "/user", admin).get_json()["users"]}
    # A tenant administrator, too (a group of that tenant as profile).
    r = auth.call(
        "POST",
        "/user",
        admin,
        json={"username": "bea", "passwd": "bea-pass-123", "service": tenant_b, "profile": "admin"},
    )
    assert r.status_code == 200, r.get_json()
    bea = auth.login("bea", "bea-pass-123", tenant_b)
    assert auth.call("GET", "/user/bob", bea).status_code == 200
    # Unknown and malformed tenants are refused clearly; so is a profile the tenant does not have.
    r = auth.call("POST", "/user", admin, json={"username": "x1", "passwd": "x1-pass-123", "service": "tnosuchtenant"})
    assert r.status_code == 404 and "tnosuchtenant" in r.get_json()["message"]
    r = auth.call("POST", "/user", admin, json={"username": "x1", "passwd": "x1-pass-123", "service": "Not A Tenant"})
    assert r.status_code == 400
    r = auth.call("POST", "/user", admin, json={"username": "x1", "service": tenant_b, "profile": "nosuchgroup"})
    assert r.status_code == 400 and "profile" in r.get_json()["message"]
    r = auth.call("POST", "/user", admin, json={"username": "bob", "passwd": "bob-pass-456", "service": tenant_b})
    assert r.status_code == 409


def test_only_admins_of_the_management_tenant_name_another_tenant(auth):
    tenant_b, boss_b = auth.new_tenant()
    tenant_c, boss_c = auth.new_tenant()
    body = {"username": "intruder", "passwd": "intruder-pass-1", "service": tenant_c}
    r = auth.call("POST", "/user", boss_b, json=body)
    assert r.status_code == 403 and "own tenant" in r.get_json()["message"]
    assert auth.call("GET", "/user/intruder", boss_c).status_code == 404
    assert auth.call("GET", "/user/intruder", boss_b).status_code == 404
    # Naming the caller's own tenant is fine, as in dojot.
    r = auth.call("POST", "/user", boss_b, json={"username": "own", "passwd": "own-pass-123", "service": tenant_b})
    assert r.status_code == 200, r.get_json()
    # A member of the management tenant outside its group admin may not either, even allowed to create users.
    admin = auth.admin_token()
    assert auth.call("POST", "/pap/group", admin, json={"name": "helpers"}).status_code == 200
    assert auth.call("POST", "/pap/grouppermissions/helpers/9", admin).status_code == 200  # dojot's all_user
    auth.new_user(admin, "helper", passwd="helper-pass-1", profile="helpers")
    helper = auth.login("helper", "helper-pass-1", "admin")
    assert auth.decision(helper, "POST", "/auth/user") == "permit"
    r = auth.call("POST", "/user", helper, json=body)
    assert r.status_code == 403 and "admin" in r.get_json()["message"], r.get_json()
    assert auth.call("GET", "/user/intruder", boss_c).status_code == 404
