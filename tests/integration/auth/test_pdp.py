"""The policy decision point: dojot's POST /pdp and the gateway's /pdp/gateway, the default profiles, the cache
in Redis and its invalidation, and every kind of bad token."""

import base64
import hashlib
import json
import time
from pathlib import Path

import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.store_redis import RedisAuthCache, derive_cache_key
from tests.integration.auth.helpers import MASTER_SECRET

pytestmark = pytest.mark.integration


@pytest.fixture
def rds(redis_url):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


DEFAULTS = [
    ("admin", "GET", "/device", "permit"),
    ("admin", "POST", "/device", "permit"),
    ("admin", "DELETE", "/template/3", "permit"),
    ("admin", "POST", "/auth/user", "permit"),
    ("user", "GET", "/device", "permit"),
    ("user", "HEAD", "/history/device/x/history", "permit"),
    ("user", "POST", "/device", "deny"),
    ("user", "DELETE", "/device/abc", "deny"),
    ("user", "PUT", "/device/abc/actuate", "permit"),
    ("user", "PUT", "/device/abc", "deny"),
    ("user", "GET", "/auth/user", "deny"),
    ("user", "GET", "/auth/pap/group", "deny"),
    ("user", "GET", "/auth/%75ser", "deny"),
    ("user", "GET", "/device/../auth/user", "deny"),
    ("user", "GET", "/auth//user?x=1", "deny"),
]


@pytest.fixture(scope="module")
def tenant_tokens(auth):
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "kim")
    return {"admin": boss, "user": auth.login("kim", "user-pass-123", tenant)}


@pytest.mark.parametrize(
    ("profile", "method", "path", "expected"), DEFAULTS, ids=[f"{p}-{m}-{u}" for p, m, u, _ in DEFAULTS]
)
def test_default_profiles(auth, tenant_tokens, profile, method, path, expected):
    token = tenant_tokens[profile]
    assert auth.decision(token, method, path) == expected
    assert auth.gateway(token, method, path).status_code == (200 if expected == "permit" else 403)


def test_gateway_answers_name_the_caller_or_the_reason(auth, tenant_tokens):
    r = auth.gateway(tenant_tokens["user"], "GET", "/device?attr=x")
    assert r.status_code == 200 and r.headers["X-Ondas-User"] == "kim" and r.headers["X-Ondas-Tenant"]
    r = auth.gateway(tenant_tokens["user"], "POST", "/device")
    assert r.status_code == 403 and "POST /device" in r.headers["X-Ondas-Reason"]
    assert r.get_json()["error"] == "forbidden"
    r = auth.call("GET", "/pdp/gateway", tenant_tokens["user"])  # the gateway did not name the request
    assert r.status_code == 403
    r = auth.gateway(tenant_tokens["user"], "G E T", "/device")
    assert r.status_code == 403
    r = auth.gateway(None, "GET", "/device")
    assert r.status_code == 401 and "Authorization" in r.headers["X-Ondas-Reason"]


def _bad_tokens(auth, tokens):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    own_key = Path(auth.settings.jwt_private_key_file).read_text()
    good = jwt.decode(auth.admin_token(), options={"verify_signature": False})
    now = int(time.time())
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(good).encode()).rstrip(b"=").decode()
    tampered_body = base64.urlsafe_b64encode(json.dumps({**good, "service": "other"}).encode()).rstrip(b"=").decode()
    real = auth.admin_token().split(".")
    return {
        "garbage": "not.a.token",
        "wrong-key": jwt.encode(good, key, algorithm="RS256"),
        "alg-none": f"{header}.{body}.",
        "tampered": f"{real[0]}.{tampered_body}.{real[2]}",
        "hs256-public-key": jwt.encode(good, "x" * 64, algorithm="HS256"),
        "expired": jwt.encode({**good, "iat": now - 120, "exp": now - 60}, own_key, algorithm="RS256"),
        # Signed with the platform's key but not issued by auth (no jti/userid/tv): not accepted by auth.
        "foreign-claims": tokens.token("admin"),
        "wrong-version": jwt.encode({**good, "tv": good["tv"] + 1}, own_key, algorithm="RS256"),
    }


def test_bad_tokens_are_401_at_the_gateway_and_deny_at_the_pdp(auth, tokens):
    for name, token in _bad_tokens(auth, tokens).items():
        r = auth.gateway(token, "GET", "/device")
        assert r.status_code == 401, name
        assert r.get_json()["error"] == "unauthenticated" and r.headers["X-Ondas-Reason"], name
        assert auth.decision(token, "GET", "/device") == "deny", name
    r = auth.call(
        "GET",
        "/pdp/gateway",
        headers={"Authorization": "Basic abc", "X-Original-Method": "GET", "X-Original-URI": "/device"},
    )
    assert r.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"jwt": "x", "action": "GET"},
        {"jwt": "x", "action": "G E T", "resource": "/d"},
        {"jwt": "x", "action": "GET", "resource": ""},
        {"jwt": 5, "action": "GET", "resource": "/d"},
    ],
    ids=["empty", "no-resource", "bad-action", "empty-resource", "jwt-type"],
)
def test_pdp_bad_bodies_are_400(auth, body):
    r = auth.call("POST", "/pdp", json=body)
    assert r.status_code == 400 and r.get_json()["message"]


def test_decisions_are_cached_and_every_policy_change_invalidates_them(auth, rds):
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "lee")
    lee = auth.login("lee", "user-pass-123", tenant)
    prefix = auth.settings.cache_prefix
    assert auth.decision(lee, "POST", "/flows") == "deny"
    flows = hashlib.sha1(b"/flows", usedforsecurity=False).hexdigest()
    keys = rds.keys(f"{prefix}dec:{tenant}:*:POST:{flows}")
    assert len(keys) == 1 and rds.get(keys[0]).startswith("deny|")
    # A value written by hand does not carry auth's signature: ignored.
    rds.set(keys[0], "permit")
    assert auth.decision(lee, "POST", "/flows") == "deny"
    # A value signed with auth's key is the answer given (proof that the cache is read).
    _, _, gen, uid, _, _ = keys[0][len(prefix) :].split(":")
    cache = RedisAuthCache(auth.settings.redis_url, prefix=prefix, key=derive_cache_key(MASTER_SECRET))
    try:
        cache.store_decision(tenant, int(gen), int(uid), "POST", "/flows", "permit")
    finally:
        cache.close()
    assert auth.decision(lee, "POST", "/flows") == "permit"

    def is_permitted():
        return auth.decision(lee, "POST", "/flows") == "permit"

    # Each kind of change takes effect at once.
    pid = auth.call(
        "POST",
        "/pap/permission",
        boss,
        json={"name": "flows", "path": "/flows", "method": "POST", "permission": "permit"},
    ).get_json()["id"]
    assert not is_permitted()  # a new permission, related to nobody yet: cache invalidated, real answer again
    auth.call("POST", f"/pap/userpermissions/lee/{pid}", boss)
    assert is_permitted()
    auth.call(
        "PUT",
        f"/pap/permission/{pid}",
        boss,
        json={"name": "flows", "path": "/flows", "method": "POST", "permission": "deny"},
    )
    assert not is_permitted()
    auth.call("DELETE", f"/pap/userpermissions/lee/{pid}", boss)
    auth.call(
        "PUT",
        f"/pap/permission/{pid}",
        boss,
        json={"name": "flows", "path": "/flows", "method": "POST", "permission": "permit"},
    )
    gid = auth.call("POST", "/pap/group", boss, json={"name": "flowers"}).get_json()["id"]
    auth.call("POST", f"/pap/grouppermissions/{gid}/{pid}", boss)
    assert not is_permitted()
    auth.call("POST", f"/pap/usergroup/lee/{gid}", boss)
    assert is_permitted()
    auth.call("DELETE", f"/pap/usergroup/lee/{gid}", boss)
    assert not is_permitted()
    auth.call("POST", f"/pap/usergroup/lee/{gid}", boss)
    assert is_permitted()
    auth.call("DELETE", f"/pap/grouppermissions/{gid}/{pid}", boss)
    assert not is_permitted()
    auth.call("POST", f"/pap/grouppermissions/{gid}/{pid}", boss)
    assert is_permitted()
    auth.call("DELETE", f"/pap/permission/{pid}", boss)
    assert not is_permitted()


def test_decisions_work_without_the_redis_keys(auth, rds):
    """Redis holds only copies: with its keys gone (as after a restart) decisions are the same."""
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "max")
    mx = auth.login("max", "user-pass-123", tenant)
    assert auth.decision(mx, "GET", "/device") == "permit"
    for key in rds.scan_iter(f"{auth.settings.cache_prefix}*"):
        rds.delete(key)
    assert auth.decision(mx, "GET", "/device") == "permit"
    assert auth.decision(mx, "POST", "/device") == "deny"
