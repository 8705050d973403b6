"""agents/core/credentials_redis.py against the real Redis: hashes only, verdicts cached in the process for a short
time, and dropped as soon as a change is announced."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from agents.core.credentials_redis import RedisCredentialStore as CredentialStore
from agents.core.credentials_redis import hash_password, tenant_key
from tests.servers import DEVICE_CREDENTIALS_KEY
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def fast_hash(password: str) -> str:
    return hash_password(password, n=2**4)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tenant() -> str:
    return "c" + uuid.uuid4().hex[:10]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_verify_caches_verdicts_for_the_ttl_only(redis_url, raw, tenant):
    clock = Clock()
    store = CredentialStore.from_url(
        redis_url, integrity_key=DEVICE_CREDENTIALS_KEY, cache_ttl=10, clock=clock, hasher=fast_hash
    )
    store.set_password(tenant, "d1", "right")
    assert store.verify(tenant, "d1", "right") and not store.verify(tenant, "d1", "wrong")
    # Changed behind the store's back (no announcement): the cached verdicts stand until they expire.
    raw.hset(tenant_key(tenant), "d1", store.stored_form(tenant, "d1", fast_hash("other")))
    assert store.verify(tenant, "d1", "right"), "the cached verdict, without asking Redis"
    clock.now += 11
    assert not store.verify(tenant, "d1", "right") and store.verify(tenant, "d1", "other")
    store.close()


def test_a_change_announced_by_another_process_drops_the_cached_verdict(redis_url, tenant):
    reader = CredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY, cache_ttl=3600, hasher=fast_hash)
    writer = CredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY, hasher=fast_hash)
    stop = threading.Event()
    listener = threading.Thread(target=reader.listen, args=(stop,), daemon=True)
    listener.start()
    try:
        wait_for(reader.listening.is_set, 10, "the change announcements")
        writer.set_password(tenant, "d1", "first")
        assert reader.verify(tenant, "d1", "first")
        writer.set_password(tenant, "d1", "second")
        wait_for(lambda: not reader.verify(tenant, "d1", "first"), 10, "the old password to be refused")
        assert reader.verify(tenant, "d1", "second")
        assert writer.delete(tenant, "d1") is True
        wait_for(lambda: not reader.verify(tenant, "d1", "second"), 10, "the removed device to be refused")
        assert writer.delete(tenant, "d1") is False
    finally:
        stop.set()
        listener.join(5)
        reader.close()
        writer.close()


def test_only_a_salted_hash_is_stored_per_tenant_and_device(redis_url, raw, tenant):
    store = CredentialStore.from_url(redis_url, integrity_key=DEVICE_CREDENTIALS_KEY)
    store.set_password(tenant, "d1", "same-password")
    store.set_password(tenant, "d2", "same-password")
    stored = raw.hgetall(tenant_key(tenant))
    assert set(stored) == {b"d1", b"d2"}
    assert stored[b"d1"] != stored[b"d2"], "salted"
    assert all(v.startswith(b"scrypt$16384$8$1$") and b"same-password" not in v for v in stored.values())
    assert store.verify(tenant, "d1", "same-password")
    assert not store.verify("x" + tenant, "d1", "same-password"), "another tenant's device of the same id"
    store.close()


def test_redis_away_is_unavailable_not_a_crash():
    from ondas.errors import Unavailable

    store = CredentialStore(
        redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1), integrity_key=DEVICE_CREDENTIALS_KEY
    )
    with pytest.raises(Unavailable):
        store.verify("t", "d", "pw")
    assert store.ping() is False
