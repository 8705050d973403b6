"""auth's Redis cache cannot grant access by itself: values are signed by auth (HMAC-SHA256 bound to the key),
revocations stay authoritative in PostgreSQL, and every key carries the tenant. Against the real Redis, whose
embedded server asks for a password."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import redis

from auth.store_redis import INTEGRITY_FAILURES, RedisAuthCache, derive_cache_key
from tests.integration.auth.helpers import MASTER_SECRET, AuthClient
from tests.servers import Servers

pytestmark = pytest.mark.integration


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def failures(kind: str) -> float:
    return float(INTEGRITY_FAILURES.labels(kind)._value.get())


def test_a_permit_written_by_hand_does_not_grant_access(auth: AuthClient, rds: redis.Redis) -> None:
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "pia")
    pia = auth.login("pia", "user-pass-123", tenant)
    prefix = auth.settings.cache_prefix
    assert auth.decision(pia, "POST", "/flows") == "deny"
    digest = hashlib.sha1(b"/flows", usedforsecurity=False).hexdigest()
    (key,) = rds.keys(f"{prefix}dec:{tenant}:*:POST:{digest}")
    before = failures("decision")
    for planted in ("permit", "permit|99999999999|" + "0" * 64):
        rds.set(key, planted)
        assert auth.decision(pia, "POST", "/flows") == "deny"
        assert auth.gateway(pia, "POST", "/flows").status_code == 403
    assert failures("decision") >= before + 2
    # A permit auth signed for another user's key does not verify under this one either.
    auth.new_user(boss, "pat")
    pat = auth.login("pat", "user-pass-123", tenant)
    cache = RedisAuthCache(auth.settings.redis_url, prefix=prefix, key=derive_cache_key(MASTER_SECRET))
    try:
        gen = cache.generation(tenant)
        assert gen is not None
        other = cache.decision_key(tenant, gen, claims(pat)["userid"], "POST", "/flows")
        cache.store_decision(tenant, gen, claims(pat)["userid"], "POST", "/flows", "permit")
        rds.set(key, rds.get(other) or "")
    finally:
        cache.close()
    assert auth.decision(pia, "POST", "/flows") == "deny"
    # And one signed with another key (another deployment's, say) neither.
    stranger = RedisAuthCache(auth.settings.redis_url, prefix=prefix, key=derive_cache_key("another-secret"))
    try:
        stranger.store_decision(tenant, gen, claims(pia)["userid"], "POST", "/flows", "permit")
    finally:
        stranger.close()
    assert auth.decision(pia, "POST", "/flows") == "deny"


def test_deleting_a_revocation_entry_does_not_unrevoke(auth: AuthClient, rds: redis.Redis) -> None:
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "rex")
    rex = auth.login("rex", "user-pass-123", tenant)
    assert auth.gateway(rex, "GET", "/device").status_code == 200
    assert auth.call("POST", "/revoke", rex).status_code == 200
    key = f"{auth.settings.cache_prefix}rev:{tenant}:{claims(rex)['jti']}"
    assert rds.get(key) is not None and rds.get(key).startswith("revoked|")
    rds.delete(key)
    assert auth.gateway(rex, "GET", "/device").status_code == 401
    assert auth.decision(rex, "GET", "/device") == "deny"
    # Read again from PostgreSQL and cached (signed) again.
    assert rds.get(key).startswith("revoked|")
    # An "ok" written by hand is not auth's: PostgreSQL is asked again.
    rds.set(key, "ok")
    assert auth.gateway(rex, "GET", "/device").status_code == 401
    # Nor an "ok" auth signed for another token, copied over.
    other = auth.login("rex", "user-pass-123", tenant)
    assert auth.gateway(other, "GET", "/device").status_code == 200
    other_key = f"{auth.settings.cache_prefix}rev:{tenant}:{claims(other)['jti']}"
    assert rds.get(other_key).startswith("ok|")
    rds.set(key, rds.get(other_key) or "")
    assert auth.gateway(rex, "GET", "/device").status_code == 401


def test_the_token_version_key_carries_the_tenant(auth: AuthClient, rds: redis.Redis) -> None:
    tenant, boss = auth.new_tenant()
    auth.new_user(boss, "tia")
    tia = auth.login("tia", "user-pass-123", tenant)
    assert auth.gateway(tia, "GET", "/device").status_code == 200
    uid = claims(tia)["userid"]
    prefix = auth.settings.cache_prefix
    key = f"{prefix}tv:{tenant}:{uid}"
    assert rds.get(key).startswith(f"{claims(tia)['tv']}|")
    assert not rds.exists(f"{prefix}tv:{uid}")
    # Revoking every token of the user bumps the version; writing the old value back by hand does not help.
    assert auth.call("POST", "/revoke", boss, json={"username": "tia"}).status_code == 200
    assert auth.gateway(tia, "GET", "/device").status_code == 401
    rds.set(key, str(claims(tia)["tv"]))
    assert auth.gateway(tia, "GET", "/device").status_code == 401
    # A version auth signed under another tenant's key does not verify under this one.
    cache = RedisAuthCache(auth.settings.redis_url, prefix=prefix, key=derive_cache_key(MASTER_SECRET))
    try:
        cache.set_version("x" + tenant, uid, claims(tia)["tv"])
        rds.set(key, rds.get(f"{prefix}tv:x{tenant}:{uid}") or "")
    finally:
        cache.close()
    assert auth.gateway(tia, "GET", "/device").status_code == 401


def test_the_embedded_redis_refuses_a_client_without_the_password(servers: Servers, redis_url: str) -> None:
    cfg = servers.ensure("redis")
    anonymous = redis.Redis(host=cfg.host, port=cfg.ports["redis"], socket_timeout=5)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("ondas:auth:planted", "permit")
    finally:
        anonymous.close()
    wrong = redis.Redis(host=cfg.host, port=cfg.ports["redis"], password="wrong", socket_timeout=5)
    try:
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
    finally:
        wrong.close()
    with redis.Redis.from_url(redis_url) as r:
        assert r.ping()
    # The password is in a file of mode 0600, not on the command line, and not in what `make status` prints.
    assert cfg.redis_password not in " ".join(servers.proc("redis").spec.argv)
    assert (cfg.data_dir / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
    assert (cfg.data_dir / "secrets" / "redis").stat().st_mode & 0o077 == 0
    assert cfg.redis_password not in cfg.redis_display_url and "***" in cfg.redis_display_url
