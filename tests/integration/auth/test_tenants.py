"""Tenants: created and deleted by administrators of the management tenant only, each change published on
``dojot-management.dojot.tenancy`` (consumed here from the real broker); internal routes need a service
identity."""

import uuid

import pytest

from auth.app import build, close
from tests.integration.auth.helpers import TenancyEvents

pytestmark = pytest.mark.integration


@pytest.fixture
def events(kafka_bootstrap):
    e = TenancyEvents(kafka_bootstrap)
    yield e
    e.close()


def test_management_admin_creates_lists_and_deletes_a_tenant_and_each_change_is_published(auth, events):
    admin = auth.admin_token()
    tenant = "t" + uuid.uuid4().hex[:10]
    r = auth.call(
        "POST", "/tenants", admin, json={"tenant": tenant, "admin": {"username": "boss", "passwd": "boss-pass-1"}}
    )
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["tenant"] == tenant and r.get_json()["admin"]["profile"] == "admin"
    assert events.wait_for({"type": "CREATE", "tenant": tenant}) == tenant
    assert tenant in auth.call("GET", "/tenants", admin).get_json()["tenants"]

    boss = auth.login("boss", "boss-pass-1", tenant)
    groups = {g["name"] for g in auth.call("GET", "/pap/group", boss).get_json()["groups"]}
    assert groups == {"admin", "user"}
    auth.new_user(boss, "worker")

    r = auth.call("DELETE", f"/tenants/{tenant}", admin)
    assert r.status_code == 200, r.get_json()
    assert events.wait_for({"type": "DELETE", "tenant": tenant}) == tenant
    assert tenant not in auth.call("GET", "/tenants", admin).get_json()["tenants"]
    # Its users are gone: no login, and their outstanding tokens no longer pass.
    assert (
        auth.call("POST", "/", json={"username": "boss", "passwd": "boss-pass-1", "service": tenant}).status_code == 401
    )
    assert auth.call("POST", "/", json={"username": "worker", "passwd": "user-pass-123"}).status_code == 401
    assert auth.gateway(boss, "GET", "/device").status_code == 401
    assert auth.decision(boss, "GET", "/device") == "deny"


def test_a_tenant_name_can_be_used_again_after_deletion(auth):
    admin = auth.admin_token()
    tenant = "t" + uuid.uuid4().hex[:10]
    body = {"tenant": tenant, "admin": {"username": "boss", "passwd": "boss-pass-1"}}
    assert auth.call("POST", "/tenants", admin, json=body).status_code == 201
    assert auth.call("DELETE", f"/tenants/{tenant}", admin).status_code == 200
    assert auth.call("POST", "/tenants", admin, json=body).status_code == 201
    # The new tenant's admin has fresh rows: no group or permission of the old one survived.
    boss = auth.login("boss", "boss-pass-1", tenant)
    assert auth.call("GET", "/pap/permission?name=read_all", boss).status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "tenant"),
        ({"tenant": "Bad-Name"}, "tenant names"),
        ({"tenant": 5}, "tenant"),
        ({"tenant": "okname", "admin": "x"}, "admin"),
        ({"tenant": "okname", "admin": {"username": "boss", "passwd": "short"}}, "at least"),
        ({"tenant": "okname", "admin": {"username": "Bad Name", "passwd": "long-enough-1"}}, "usernames"),
        ({"tenant": "okname", "extra": 1}, "unknown"),
    ],
    ids=["missing", "bad-name", "not-string", "admin-not-object", "weak-password", "bad-username", "unknown-field"],
)
def test_bad_tenant_bodies_are_400_and_create_nothing(auth, body, fragment):
    admin = auth.admin_token()
    r = auth.call("POST", "/tenants", admin, json=body)
    assert r.status_code == 400
    assert fragment in r.get_json()["message"]
    assert "okname" not in auth.call("GET", "/tenants", admin).get_json()["tenants"]


def test_creating_an_existing_tenant_is_409_and_the_management_tenant_cannot_be_deleted(auth):
    admin = auth.admin_token()
    tenant, _ = auth.new_tenant()
    assert auth.call("POST", "/tenants", admin, json={"tenant": tenant}).status_code == 409
    r = auth.call("DELETE", "/tenants/admin", admin)
    assert r.status_code == 400 and "management tenant" in r.get_json()["message"]
    assert auth.call("DELETE", "/tenants/tnosuchtenant", admin).status_code == 404
    assert auth.call("DELETE", "/tenants/Bad-Name", admin).status_code == 400


def test_only_administrators_of_the_management_tenant_manage_tenants(auth):
    admin = auth.admin_token()
    tenant, tenant_admin = auth.new_tenant()
    auth.new_user(admin, "plainmgmt" + uuid.uuid4().hex[:6], passwd="plain-pass-1")
    plain_users = [
        u for u in auth.call("GET", "/user", admin).get_json()["users"] if u["username"].startswith("plainmgmt")
    ]
    plain = auth.login(plain_users[-1]["username"], "plain-pass-1", "admin")
    for token in (tenant_admin, plain):
        assert auth.call("GET", "/tenants", token).status_code == 403
        assert auth.call("POST", "/tenants", token, json={"tenant": "tnever"}).status_code == 403
        assert auth.call("DELETE", f"/tenants/{tenant}", token).status_code == 403
    assert auth.call("GET", "/tenants").status_code == 401
    assert tenant in auth.call("GET", "/tenants", admin).get_json()["tenants"]
    assert "tnever" not in auth.call("GET", "/tenants", admin).get_json()["tenants"]


def test_internal_routes_need_a_service_identity(auth, events):
    r = auth.call("GET", "/admin/tenants")
    assert r.status_code == 401 and "Service" in r.get_json()["message"]
    assert auth.call("GET", "/admin/tenants", auth.admin_token()).status_code == 401  # a user token is not enough
    forged = {"Authorization": "Service persister:" + "0" * 64}
    assert auth.call("GET", "/admin/tenants", headers=forged).status_code == 401
    ok = auth.call("GET", "/admin/tenants", headers=auth.service_headers("persister"))
    assert ok.status_code == 200 and "admin" in ok.get_json()["tenants"]

    tenant = "t" + uuid.uuid4().hex[:10]
    body = {"tenant": tenant, "admin": {"username": "first", "passwd": "first-pass-1"}}
    assert auth.call("POST", "/admin/tenants", json=body).status_code == 401
    r = auth.call("POST", "/admin/tenants", json=body, headers=auth.service_headers())
    assert r.status_code == 201, r.get_json()
    assert events.wait_for({"type": "CREATE", "tenant": tenant}) == tenant
    again = auth.call("POST", "/admin/tenants", json={"tenant": tenant}, headers=auth.service_headers())
    assert again.status_code == 200 and again.get_json()["created"] is False
    assert auth.login("first", "first-pass-1", tenant)
    assert auth.call("DELETE", f"/admin/tenants/{tenant}", headers=auth.service_headers()).status_code == 200
    assert events.wait_for({"type": "DELETE", "tenant": tenant}) == tenant


def test_internal_routes_are_closed_without_a_master_secret(make_settings):
    from auth.app import prepare

    settings = make_settings(service_master_secret="")
    prepare(settings)
    app = build(settings)
    try:
        from ondas.service_identity import derive_service_key, service_authorization

        headers = {"Authorization": service_authorization("persister", derive_service_key("anything", "persister"))}
        r = app.test_client().get("/admin/tenants", headers=headers)
        assert r.status_code == 401 and "AUTH_SERVICE_MASTER_SECRET" in r.get_json()["message"]
    finally:
        close(app)
