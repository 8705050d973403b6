"""Login throttling in auth itself, whatever the gateway does: per (tenant, username) and per client address, with
a doubling backoff, state in the session's Redis, checked before any password hash is computed. Each test starts
an auth of its own (its own Redis key prefix) with small limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.integration.auth.helpers import AuthClient

pytestmark = pytest.mark.integration

PASSWORD = "sam-pass-1234"


def failures() -> float:
    return REGISTRY.get_sample_value("auth_login_failures_total") or 0.0


def throttled(reason: str) -> float:
    return REGISTRY.get_sample_value("auth_login_throttled_total", {"reason": reason}) or 0.0


def attempt(auth: AuthClient, username: str, passwd: str, address: str = "203.0.113.10", **kw: Any) -> Any:
    """A login straight to auth's route from ``address`` (the TCP peer, not a header)."""
    headers = kw.pop("headers", {})
    body = {"username": username, "passwd": passwd, **kw}
    return auth.client.post("/", json=body, environ_base={"REMOTE_ADDR": address}, headers=headers)


def login_after_backoff(auth: AuthClient, username: str, passwd: str, address: str, **kw: Any) -> Any:
    """Log in, waiting for ``Retry-After`` as long as the answer is 429."""
    for _ in range(20):
        r = attempt(auth, username, passwd, address, **kw)
        if r.status_code != 429:
            return r
        time.sleep(int(r.headers["Retry-After"]))
    raise AssertionError("still throttled")


@pytest.fixture
def throttled_auth(make_settings: Callable[..., Any], start_auth: Callable[[Any], AuthClient]) -> Callable[..., Any]:
    def start(**limits: Any) -> tuple[AuthClient, str]:
        settings = {
            "login_user_failures": 3,
            "login_address_failures": 1000,
            "login_window_seconds": 60,
            "login_backoff_seconds": 1.0,
            "login_backoff_max_seconds": 2.0,
            **limits,
        }
        auth = start_auth(make_settings(**settings))
        tenant, boss = auth.new_tenant()
        auth.new_user(boss, "sam", passwd=PASSWORD)
        auth.new_user(boss, "sue", passwd="sue-pass-1234")
        return auth, tenant

    return start


def test_wrong_passwords_are_throttled_before_any_hash_and_the_right_one_works_after(throttled_auth):
    # A backoff of seconds, not one: the right password below must still meet it on a loaded machine.
    auth, tenant = throttled_auth(login_backoff_seconds=5.0, login_backoff_max_seconds=10.0)
    statuses = []
    before_throttled = throttled("user")
    for i in range(50):
        before = failures()
        r = attempt(auth, "sam", f"wrong-password-{i}", service=tenant)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert failures() == before, "a throttled attempt checked a password"
            assert r.get_json()["error"] == "rate_limited" and r.get_json()["message"]
            assert int(r.headers["Retry-After"]) >= 1
        else:
            assert r.status_code == 401 and failures() == before + 1
    assert statuses[:4] == [401, 401, 401, 429], statuses
    assert statuses.count(429) >= 25, statuses
    assert throttled("user") - before_throttled == statuses.count(429)

    # During the backoff even the right password is refused (it cannot be told apart without a hash) ...
    r = attempt(auth, "sam", PASSWORD, service=tenant)
    assert r.status_code == 429
    # ... and after it the right password works, and resets the user's counter.
    r = login_after_backoff(auth, "sam", PASSWORD, "203.0.113.10", service=tenant)
    assert r.status_code == 200, r.get_json()
    assert [attempt(auth, "sam", "wrong-again", service=tenant).status_code for _ in range(3)] == [401, 401, 401]
    assert attempt(auth, "sam", "wrong-again", service=tenant).status_code == 429


def test_parallel_attempts_cannot_outrun_the_limit(throttled_auth):
    auth, tenant = throttled_auth()
    before = failures()
    statuses: list[int] = []

    def one() -> None:
        client = auth.app.test_client()
        r = client.post(
            "/",
            json={"username": "sam", "passwd": "wrong-password", "service": tenant},
            environ_base={"REMOTE_ADDR": "203.0.113.20"},
        )
        statuses.append(r.status_code)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {401, 429} and 429 in statuses, statuses
    assert failures() - before <= 3, "more passwords were checked than the limit allows"


def test_one_address_trying_many_usernames_is_throttled_by_address(throttled_auth):
    auth, _tenant = throttled_auth(login_user_failures=100, login_address_failures=5)
    before = throttled("address")
    statuses = [attempt(auth, f"guess{i}", "wrong-password", "198.51.100.7").status_code for i in range(20)]
    assert statuses[:6] == [401] * 5 + [429], statuses
    assert throttled("address") - before == statuses.count(429)
    # A header sent by a client that is not a trusted proxy changes nothing.
    spoofed = attempt(auth, "other", "x-password", "198.51.100.7", headers={"X-Forwarded-For": "192.0.2.99"})
    assert spoofed.status_code == 429
    # Other addresses are not affected, nor are they when a trusted proxy (loopback: the gateway) names them.
    assert attempt(auth, "guess0", "wrong-password", "198.51.100.8").status_code == 401
    via_gateway = {"X-Forwarded-For": "198.51.100.9"}
    assert attempt(auth, "guess0", "wrong-password", "127.0.0.1", headers=via_gateway).status_code == 401
    # Behind the gateway, the address the gateway appended counts, not what the client put before it.
    for forwarded in ("198.51.100.7", "192.0.2.1, 198.51.100.7"):
        r = attempt(auth, "guess0", "wrong-password", "127.0.0.1", headers={"X-Forwarded-For": forwarded})
        assert r.status_code == 429, forwarded


def test_one_users_lockout_leaves_other_users_alone(throttled_auth):
    auth, tenant = throttled_auth()
    for _ in range(3):
        assert attempt(auth, "sam", "wrong-password", "203.0.113.30", service=tenant).status_code == 401
    assert attempt(auth, "sam", PASSWORD, "203.0.113.30", service=tenant).status_code == 429
    # The user's lockout holds from any address.
    assert attempt(auth, "sam", PASSWORD, "203.0.113.31", service=tenant).status_code == 429
    # Another user, even from the same address, logs in and fails as usual.
    assert attempt(auth, "sue", "sue-pass-1234", "203.0.113.30", service=tenant).status_code == 200
    assert attempt(auth, "sue", "wrong-password", "203.0.113.30", service=tenant).status_code == 401
    # A user of the same name in another tenant is another user.
    other, boss = auth.new_tenant()
    auth.new_user(boss, "sam", passwd="other-sam-pass-1")
    assert attempt(auth, "sam", "other-sam-pass-1", "203.0.113.30", service=other).status_code == 200


def test_successful_logins_are_never_throttled(throttled_auth):
    auth, tenant = throttled_auth(login_address_failures=3)
    assert attempt(auth, "sam", "wrong-password", "203.0.113.40", service=tenant).status_code == 401
    assert attempt(auth, "sue", "wrong-password", "203.0.113.40", service=tenant).status_code == 401
    statuses = [attempt(auth, "sam", PASSWORD, "203.0.113.40", service=tenant).status_code for _ in range(30)]
    assert statuses == [200] * 30


def test_same_username_and_password_in_two_tenants_needs_service(throttled_auth):
    auth, tenant_a = throttled_auth()
    tenant_b, boss_b = auth.new_tenant()
    auth.new_user(boss_b, "sam", passwd=PASSWORD)
    wrong = attempt(auth, "sam", "not-the-password", "203.0.113.50")
    r = attempt(auth, "sam", PASSWORD, "203.0.113.51")
    assert r.status_code == 401 and r.get_json() == wrong.get_json()
    assert '"service"' in r.get_json()["message"]
    assert tenant_a not in r.get_data(as_text=True) and tenant_b not in r.get_data(as_text=True)
    for tenant in (tenant_a, tenant_b):
        r = attempt(auth, "sam", PASSWORD, "203.0.113.52", service=tenant)
        assert r.status_code == 200, r.get_json()


def test_metrics_are_exposed(throttled_auth):
    auth, _tenant = throttled_auth()
    text = auth.client.get("/metrics").get_data(as_text=True)
    assert "auth_login_failures_total" in text
    assert 'auth_login_throttled_total{reason="user"}' in text
    assert 'auth_login_throttled_total{reason="address"}' in text
