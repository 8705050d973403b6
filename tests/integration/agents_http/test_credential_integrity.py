"""Each stored device password hash is bound to its tenant and device by an HMAC under the agents' key: a hash
planted in Redis by hand (made with the very same hash function), copied from another device, or left by a version
before the binding does not authenticate. Against the real Redis and the HTTP agent as a real process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from agents.core.credentials_redis import INTEGRITY_FAILURES, hash_password, tenant_key
from agents.core.credentials_redis import RedisCredentialStore as CredentialStore
from tests.integration.agents_http.conftest import URL, HttpAgent
from tests.servers import DEVICE_CREDENTIALS_KEY

pytestmark = pytest.mark.integration


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def fast_hash(password: str) -> str:
    return hash_password(password, n=2**4)


@pytest.fixture
def fresh_tenant() -> str:
    return "i" + uuid.uuid4().hex[:10]


def test_a_hash_planted_by_hand_does_not_verify(redis_url: str, raw: redis.Redis, fresh_tenant: str) -> None:
    store = CredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY, hasher=fast_hash)
    try:
        before = INTEGRITY_FAILURES._value.get()
        # An entry of the same form the store writes, but not made with the agents' key.
        raw.hset(tenant_key(fresh_tenant), "d1", fast_hash("planted"))
        assert not store.verify(fresh_tenant, "d1", "planted")
        assert not store.has_password(fresh_tenant, "d1")
        raw.hset(tenant_key(fresh_tenant), "d2", fast_hash("planted") + "|" + "0" * 64)
        assert not store.verify(fresh_tenant, "d2", "planted")
        assert INTEGRITY_FAILURES._value.get() >= before + 2
        # A store with another key (another deployment) is no better than a hand.
        other = CredentialStore.from_url(redis_url, integrity_key="another-key", hasher=fast_hash)
        try:
            other.set_password(fresh_tenant, "d3", "theirs")
            assert other.verify(fresh_tenant, "d3", "theirs")
        finally:
            other.close()
        assert not store.verify(fresh_tenant, "d3", "theirs")
        # New credentials set through the store work again (the upgrade path of an unbound entry).
        store.set_password(fresh_tenant, "d1", "new-password")
        assert store.verify(fresh_tenant, "d1", "new-password") and store.has_password(fresh_tenant, "d1")
        # Every entry still counts as the tenant's (removal of a tenant's credentials deletes them all).
        assert store.device_ids(fresh_tenant) == ["d1", "d2", "d3"]
    finally:
        raw.delete(tenant_key(fresh_tenant))
        store.close()


def test_a_hash_copied_to_another_device_or_tenant_does_not_verify(
    redis_url: str, raw: redis.Redis, fresh_tenant: str
) -> None:
    store = CredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY, hasher=fast_hash)
    try:
        store.set_password(fresh_tenant, "a", "a-password")
        copied = raw.hget(tenant_key(fresh_tenant), "a")
        assert copied is not None
        raw.hset(tenant_key(fresh_tenant), "b", copied)
        raw.hset(tenant_key("x" + fresh_tenant), "a", copied)
        assert store.verify(fresh_tenant, "a", "a-password")
        assert not store.verify(fresh_tenant, "b", "a-password")
        assert not store.verify("x" + fresh_tenant, "a", "a-password")
    finally:
        raw.delete(tenant_key(fresh_tenant), tenant_key("x" + fresh_tenant))
        store.close()


def test_the_http_agent_refuses_planted_and_copied_hashes(
    agent: HttpAgent, raw: redis.Redis, passwords: dict[tuple[str, str], str], tenant: str
) -> None:
    key = tenant_key(tenant)
    assert agent.post(URL, {"data": {}}, auth=(tenant, "dev1", passwords[(tenant, "dev1")])).status_code == 204
    # Planted for dev2 by hand, with the very hash function the agents use.
    raw.hset(key, "dev2", hash_password("planted-password"))
    r = agent.post(URL, {"data": {}}, auth=(tenant, "dev2", "planted-password"))
    assert r.status_code == 401, r.text
    # dev1's stored entry copied to dev2: dev1's password does not open dev2.
    raw.hset(key, "dev2", raw.hget(key, "dev1") or b"")
    r = agent.post(URL, {"data": {}}, auth=(tenant, "dev2", passwords[(tenant, "dev1")]))
    assert r.status_code == 401, r.text
    # dev1 itself is untouched.
    assert agent.post(URL, {"data": {}}, auth=(tenant, "dev1", passwords[(tenant, "dev1")])).status_code == 204
