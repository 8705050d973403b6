"""Users in dojot's shapes, logins, the password policy, password change and reset."""

import uuid

import psycopg
import pytest

from auth.passwords import legacy_scrypt_hash
from tests.integration.auth.helpers import ADMIN_PASSWORD

pytestmark = pytest.mark.integration


def test_user_lifecycle_in_dojot_shapes(auth):
    tenant, boss = auth.new_tenant()
    r = auth.call(
        "POST",
        "/user",
        boss,
        json={
            "username": "ana",
            "service": tenant,
            "email": "ana@example.com",
            "name": "Ana",
            "profile": "user",
            "passwd": "ana-pass-123",
        },
    )
    assert r.status_code == 200, r.get_json()
    created = r.get_json()[0]
    assert created["message"] == "user created" and created["groups"] == ["user"]
    user = created["user"]
    assert {k: user[k] for k in ("username", "service", "email", "name", "profile")} == {
        "username": "ana",
        "service": tenant,
        "email": "ana@example.com",
        "name": "Ana",
        "profile": "user",
    }
    assert "passwd" not in user and "password_hash" not in user

    listed = auth.call("GET", "/user", boss).get_json()["users"]
    assert {u["username"] for u in listed} == {f"{tenant}-admin", "ana"}
    by_id = auth.call("GET", f"/user/{user['id']}", boss).get_json()["user"]
    by_name = auth.call("GET", "/user/ana", boss).get_json()["user"]
    assert by_id == by_name == user

    r = auth.call("PUT", "/user/ana", boss, json={"name": "Ana Maria", "service": tenant})
    assert r.status_code == 200 and r.get_json()["user"]["name"] == "Ana Maria"
    assert r.get_json()["user"]["email"] == "ana@example.com"  # fields left out keep their value

    ana = auth.login("ana", "ana-pass-123", tenant)
    assert auth.gateway(ana, "GET", "/device").status_code == 200
    assert auth.call("DELETE", "/user/ana", boss).get_json() == {"status": 200, "message": "User removed"}
    assert auth.call("GET", "/user/ana", boss).status_code == 404
    assert auth.gateway(ana, "GET", "/device").status_code == 401  # deletion revokes its tokens
    assert auth.call("POST", "/", json={"username": "ana", "passwd": "ana-pass-123"}).status_code == 401


def test_profile_change_moves_the_user_between_groups_and_refreshes_its_tokens(auth):
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "bea", passwd="bea-pass-123")
    bea = auth.login("bea", "bea-pass-123", tenant)
    assert auth.gateway(bea, "POST", "/device").status_code == 403
    assert auth.call("PUT", "/user/bea", boss, json={"profile": "admin"}).status_code == 200
    assert auth.gateway(bea, "POST", "/device").status_code == 401  # the token says 'user': stale
    bea = auth.login("bea", "bea-pass-123", tenant)
    assert auth.gateway(bea, "POST", "/device").status_code == 200
    groups = {g["name"] for g in auth.call("GET", "/pap/user/bea/groups", boss).get_json()["groups"]}
    assert groups == {"admin"}
    r = auth.call("PUT", f"/user/{tenant}-admin", boss, json={"profile": "user"})
    assert r.status_code == 400 and "own profile" in r.get_json()["message"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "usernames"),
        ({"username": "Bad Name", "passwd": "long-pass-1"}, 400, "usernames"),
        ({"username": "12345", "passwd": "long-pass-1"}, 400, "usernames"),
        ({"username": "okuser", "passwd": "short"}, 400, "at least 8"),
        ({"username": "okuser", "passwd": 12345678}, 400, "string"),
        ({"username": "okuser", "email": "nope"}, 400, "e-mail"),
        ({"username": "okuser", "profile": "nosuchgroup"}, 400, "profile"),
        ({"username": "okuser", "name": ["x"]}, 400, "string"),
        ({"username": "okuser", "role": "x"}, 400, "unknown fields"),
        ({"username": "okuser", "service": "someothertenant"}, 403, "own tenant"),
    ],
    ids=[
        "empty",
        "bad-username",
        "digits",
        "short-password",
        "password-type",
        "email",
        "profile",
        "name-type",
        "unknown-field",
        "other-tenant",
    ],
)
def test_bad_user_bodies_say_what_is_wrong(auth, body, status, fragment):
    _, boss = auth.new_tenant()
    r = auth.call("POST", "/user", boss, json=body)
    assert r.status_code == status, r.get_json()
    assert fragment in r.get_json()["message"]
    assert "okuser" not in {u["username"] for u in auth.call("GET", "/user", boss).get_json()["users"]}


def test_bad_requests_to_user_routes(auth):
    _, boss = auth.new_tenant()
    assert auth.call("POST", "/user", boss, data="{not json", content_type="application/json").status_code == 400
    assert auth.call("POST", "/user", boss, json=["a"]).status_code == 400
    assert auth.call("GET", "/user/nosuchuser", boss).status_code == 404
    assert auth.call("GET", "/user/99999999999999999999", boss).status_code == 404
    assert auth.call("PUT", "/user/nosuchuser", boss, json={"name": "x"}).status_code == 404
    auth.new_user(boss, "carl")
    assert auth.call("PUT", "/user/carl", boss, json={"username": "carl2"}).status_code == 400
    assert auth.call("PUT", "/user/carl", boss, json={"service": "elsewhere"}).status_code == 400
    assert auth.call("PUT", "/user/carl", boss, json={"passwd": "x"}).status_code == 400
    assert auth.call("POST", "/user", boss, json={"username": "carl", "passwd": "other-pass-1"}).status_code == 409
    me = auth.call("GET", "/user", boss).get_json()["users"][0]["username"]
    assert auth.call("DELETE", f"/user/{me}", boss).status_code == 400
    assert auth.call("GET", "/user").status_code == 401


def test_login_inputs(auth):
    for body in (
        {},
        {"username": "admin"},
        {"passwd": "x"},
        {"username": 1, "passwd": "x"},
        {"username": "admin", "passwd": "x", "service": "Bad Tenant"},
        {"username": "a", "passwd": "b", "x": 1},
    ):
        r = auth.call("POST", "/", json=body)
        assert r.status_code == 400, body
        assert r.get_json()["message"]
    assert auth.call("POST", "/", data="nope").status_code == 400
    r = auth.call("POST", "/", json={"username": "admin", "passwd": "wrong-password"})
    assert r.status_code == 401 and "wrong username or password" in r.get_json()["message"]
    r = auth.call("POST", "/", json={"username": "nobody-here", "passwd": "wrong-password"})
    assert r.status_code == 401 and "wrong username or password" in r.get_json()["message"]


def test_token_claims(auth):
    import jwt

    tenant, boss = auth.new_tenant()
    claims = jwt.decode(boss, options={"verify_signature": False})
    assert jwt.get_unverified_header(boss)["alg"] == "RS256"
    assert claims["service"] == tenant and claims["username"] == f"{tenant}-admin"
    assert claims["profile"] == "admin" and isinstance(claims["groups"], list) and len(claims["groups"]) == 1
    assert claims["exp"] - claims["iat"] == auth.settings.jwt_ttl_seconds
    assert len(claims["jti"]) == 32


def test_same_username_in_two_tenants_needs_the_tenant(auth):
    """A username in several tenants is refused without ``service``, whatever the password, with the answer of a
    wrong password: a tenant administrator who creates a same-named user learns nothing, and takes nothing over."""
    import jwt

    tenant_a, boss_a = auth.new_tenant()
    tenant_b, boss_b = auth.new_tenant()
    name = "dup" + uuid.uuid4().hex[:6]
    auth.new_user(boss_a, name, passwd="pass-in-a-123")
    assert jwt.decode(auth.login(name, "pass-in-a-123"), options={"verify_signature": False})["service"] == tenant_a
    auth.new_user(boss_b, name, passwd="pass-in-b-123")
    wrong = auth.call("POST", "/", json={"username": name, "passwd": "not-the-password"})
    for passwd in ("pass-in-a-123", "pass-in-b-123"):
        r = auth.call("POST", "/", json={"username": name, "passwd": passwd})
        assert (r.status_code, r.get_json()) == (wrong.status_code, wrong.get_json()) and r.status_code == 401
        assert "service" in r.get_json()["message"]
        assert tenant_a not in r.get_data(as_text=True) and tenant_b not in r.get_data(as_text=True)
    tok = auth.login(name, "pass-in-b-123", tenant_b)
    assert jwt.decode(tok, options={"verify_signature": False})["service"] == tenant_b
    tok = auth.login(name, "pass-in-a-123", tenant_a)
    assert jwt.decode(tok, options={"verify_signature": False})["service"] == tenant_a
    assert (
        auth.call("POST", "/", json={"username": name, "passwd": "pass-in-b-123", "service": tenant_a}).status_code
        == 401
    )
    # Once only one tenant has the name, it logs in without "service" again.
    auth.call("DELETE", f"/user/{name}", boss_b)
    assert jwt.decode(auth.login(name, "pass-in-a-123"), options={"verify_signature": False})["service"] == tenant_a


def test_the_management_tenants_user_keeps_its_name_without_service(auth):
    """A tenant administrator cannot make the management administrator's login ambiguous: without ``service`` a
    name that the management tenant has is that tenant's user (tenant administrators cannot create users there)."""
    import jwt

    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "admin", passwd="tenant-admin-pass-1")
    tok = auth.login("admin", ADMIN_PASSWORD)
    assert jwt.decode(tok, options={"verify_signature": False})["service"] == "admin"
    # The tenant's own "admin" logs in by naming its tenant; without it, its password is simply wrong.
    assert (
        jwt.decode(auth.login("admin", "tenant-admin-pass-1", tenant), options={"verify_signature": False})["service"]
        == tenant
    )
    assert auth.call("POST", "/", json={"username": "admin", "passwd": "tenant-admin-pass-1"}).status_code == 401


def test_password_change_applies_the_policy_and_revokes_older_tokens(auth):
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "dan", passwd="first-pass-1")
    dan = auth.login("dan", "first-pass-1", tenant)

    def change(token, old, new):
        return auth.call("POST", "/password/update", token, json={"oldpasswd": old, "newpasswd": new})

    assert change(dan, "wrong-pass-0", "second-pass-2").status_code == 403
    assert change(dan, "first-pass-1", "short").status_code == 400
    r = change(dan, "first-pass-1", "first-pass-1")
    assert r.status_code == 400 and "last 3 passwords" in r.get_json()["message"]
    assert change(dan, "first-pass-1", {"x": 1}).status_code == 400
    assert auth.call("POST", "/password/update", dan, json={"old": "x"}).status_code == 400

    assert change(dan, "first-pass-1", "second-pass-2").status_code == 200
    assert auth.gateway(dan, "GET", "/device").status_code == 401  # tokens from before the change are revoked
    assert auth.call("POST", "/", json={"username": "dan", "passwd": "first-pass-1"}).status_code == 401
    dan = auth.login("dan", "second-pass-2", tenant)
    assert auth.gateway(dan, "GET", "/device").status_code == 200

    # History of 3: the current and the two before it are refused, older ones are allowed again.
    assert change(dan, "second-pass-2", "third-pass-3").status_code == 200
    dan = auth.login("dan", "third-pass-3", tenant)
    assert change(dan, "third-pass-3", "first-pass-1").status_code == 400
    assert change(dan, "third-pass-3", "second-pass-2").status_code == 400
    assert change(dan, "third-pass-3", "fourth-pass-4").status_code == 200
    dan = auth.login("dan", "fourth-pass-4", tenant)
    assert change(dan, "fourth-pass-4", "first-pass-1").status_code == 200
    assert auth.login("dan", "first-pass-1", tenant)


def test_reset_links(auth):
    tenant, boss = auth.new_tenant()
    # A user created without a password gets a link to set its first one.
    r = auth.call("POST", "/user", boss, json={"username": "eve", "profile": "user"})
    link = r.get_json()[0]["reset_link"]
    assert auth.call("POST", "/", json={"username": "eve", "passwd": "anything-1"}).status_code == 401
    assert auth.call("POST", f"/password/resetlink?link={link}", json={"passwd": "short"}).status_code == 400
    assert auth.call("POST", f"/password/resetlink?link={link}", json={"passwd": "eve-pass-123"}).status_code == 200
    eve = auth.login("eve", "eve-pass-123", tenant)
    # One-time.
    assert auth.call("POST", f"/password/resetlink?link={link}", json={"passwd": "eve-pass-456"}).status_code == 404
    assert auth.call("POST", "/password/resetlink", json={"passwd": "eve-pass-456"}).status_code == 400

    # An administrator asks for a link for a user; a plain user may not.
    assert auth.call("POST", f"/password/reset/{tenant}-admin", eve).status_code == 403
    r = auth.call("POST", "/password/reset/eve", boss)
    assert r.status_code == 200 and r.get_json()["expires_in"] == 1800
    link = r.get_json()["link"]
    assert auth.call("POST", f"/password/resetlink?link={link}", json={"passwd": "eve-pass-123"}).status_code == 400
    assert auth.call("POST", f"/password/resetlink?link={link}", json={"passwd": "eve-pass-789"}).status_code == 200
    assert auth.gateway(eve, "GET", "/device").status_code == 401
    assert auth.login("eve", "eve-pass-789", tenant)
    assert auth.call("POST", "/password/reset/nosuchuser", boss).status_code == 404


def test_expired_reset_links_are_refused(make_settings, start_auth):
    auth = start_auth(make_settings(passwd_reset_minutes=0))
    _, boss = auth.new_tenant()
    link = auth.call("POST", "/user", boss, json={"username": "fay"}).get_json()[0]["reset_link"]
    r = auth.call("POST", f"/password/resetlink?link={link}", json={"passwd": "fay-pass-123"})
    assert r.status_code == 404 and "expired" in r.get_json()["message"]


def test_old_scrypt_hashes_log_in_and_are_migrated_to_argon2(auth):
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "gus", passwd="current-pass-1")
    with psycopg.connect(auth.settings.db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE users SET password_hash = %s WHERE service = %s AND username = 'gus'",
            (legacy_scrypt_hash("legacy-pass-1", b"sixteen-byte-slt"), tenant),
        )
    assert auth.login("gus", "legacy-pass-1", tenant)
    with psycopg.connect(auth.settings.db_url) as conn:
        row = conn.execute(
            "SELECT password_hash FROM users WHERE service = %s AND username = 'gus'", (tenant,)
        ).fetchone()
    assert row[0].startswith("$argon2id$")
    assert auth.login("gus", "legacy-pass-1", tenant)


def test_a_login_checks_the_same_number_of_hashes_whatever_exists_elsewhere(auth, monkeypatch):
    """How long a login takes must not tell whether (or in how many tenants) a username exists."""
    from auth.passwords import Hasher
    from auth.service import LOGIN_HASH_CHECKS

    calls: list[str] = []
    original = Hasher.verify

    def counting(self, password, encoded):
        calls.append(encoded)
        return original(self, password, encoded)

    name = "shared" + uuid.uuid4().hex[:6]
    for _ in range(2):
        _tenant, tenant_admin = auth.new_tenant()
        auth.new_user(tenant_admin, name, passwd="the-right-pass-1")
    monkeypatch.setattr(Hasher, "verify", counting)
    counts = {}
    for case, body in {
        "unknown name": {"username": "nobody" + uuid.uuid4().hex[:6], "passwd": "wrong-password"},
        "name in two tenants": {"username": name, "passwd": "wrong-password"},
        "name in two tenants, right password": {"username": name, "passwd": "the-right-pass-1"},
    }.items():
        calls.clear()
        auth.call("POST", "/", json=body)
        counts[case] = len(calls)
    assert set(counts.values()) == {LOGIN_HASH_CHECKS}, counts
