"""Revocation: POST /revoke (the gateway's /auth/revoke) for one's own token, one token or all tokens of a
user; administrators only for others, and only within their tenant. Revocations outlive Redis's data."""

import pytest
import redis

pytestmark = pytest.mark.integration


@pytest.fixture
def team(auth):
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "nia")
    auth.new_user(boss, "oli")
    return tenant, boss


def test_revoking_the_own_token(auth, team):
    tenant, _ = team
    nia = auth.login("nia", "user-pass-123", tenant)
    other = auth.login("nia", "user-pass-123", tenant)
    r = auth.call("POST", "/revoke", nia)
    assert r.status_code == 200 and r.get_json()["message"] == "token revoked"
    assert auth.gateway(nia, "GET", "/device").status_code == 401
    assert "revoked" in auth.gateway(nia, "GET", "/device").headers["X-Ondas-Reason"]
    assert auth.decision(nia, "GET", "/device") == "deny"
    assert auth.call("POST", "/revoke", nia).status_code == 401  # a revoked token revokes nothing more
    assert auth.gateway(other, "GET", "/device").status_code == 200  # only that token
    # The same route under the path the gateway shows.
    assert auth.call("POST", "/auth/revoke", other, json={}).status_code == 200
    assert auth.gateway(other, "GET", "/device").status_code == 401


def test_revoking_one_token_or_all_tokens_of_a_user(auth, team):
    tenant, boss = team
    nia1, nia2 = auth.login("nia", "user-pass-123", tenant), auth.login("nia", "user-pass-123", tenant)
    oli = auth.login("oli", "user-pass-123", tenant)
    # A plain user may revoke its own tokens, not others'.
    r = auth.call("POST", "/revoke", oli, json={"jwt": nia1})
    assert r.status_code == 403
    assert auth.call("POST", "/revoke", oli, json={"username": "nia"}).status_code == 403
    assert auth.gateway(nia1, "GET", "/device").status_code == 200
    # An administrator of the tenant may.
    assert auth.call("POST", "/revoke", boss, json={"jwt": nia1}).status_code == 200
    assert auth.gateway(nia1, "GET", "/device").status_code == 401
    assert auth.gateway(nia2, "GET", "/device").status_code == 200
    assert auth.call("POST", "/revoke", boss, json={"username": "nia"}).status_code == 200
    assert auth.gateway(nia2, "GET", "/device").status_code == 401
    assert auth.login("nia", "user-pass-123", tenant)  # new logins work
    # Everyone may revoke all of its own tokens.
    assert auth.call("POST", "/revoke", oli, json={"username": "oli"}).status_code == 200
    assert auth.gateway(oli, "GET", "/device").status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"jwt": "garbage"}, 400),
        ({"jwt": 5}, 400),
        ({"jti": "abc"}, 400),
        ({"jwt": "a", "username": "b"}, 400),
        ({"username": "nobody"}, 404),
    ],
    ids=["garbage-token", "token-type", "unknown-field", "two-fields", "unknown-user"],
)
def test_bad_revocation_bodies(auth, team, body, status):
    _, boss = team
    r = auth.call("POST", "/revoke", boss, json=body)
    assert r.status_code == status and r.get_json()["message"]
    assert auth.call("POST", "/revoke", json={}).status_code == 401


def test_revocations_survive_the_loss_of_redis_data(auth, team, redis_url):
    tenant, _ = team
    nia = auth.login("nia", "user-pass-123", tenant)
    assert auth.call("POST", "/revoke", nia).status_code == 200
    rds = redis.Redis.from_url(redis_url)
    try:
        for key in rds.scan_iter(f"{auth.settings.cache_prefix}*"):
            rds.delete(key)
        assert auth.gateway(nia, "GET", "/device").status_code == 401
        # ...and the verdict, read from PostgreSQL, was cached again (signed) for the next checks.
        assert list(rds.scan_iter(f"{auth.settings.cache_prefix}rev:{tenant}:*"))
    finally:
        rds.close()
    assert auth.gateway(nia, "GET", "/device").status_code == 401


def test_expired_tokens_are_refused_at_once_with_a_short_ttl(make_settings, start_auth):
    """The token lifetime is a setting; a token past it is refused (checked with a 1 s lifetime, polling)."""
    from tests.integration.auth.helpers import poll

    auth = start_auth(make_settings(jwt_ttl_seconds=1))
    token = auth.admin_token()
    r = poll(lambda: auth.gateway(token, "GET", "/device"), lambda r: r.status_code == 401, timeout=10)
    assert "expired" in r.headers["X-Ondas-Reason"]
