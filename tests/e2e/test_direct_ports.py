"""The attack run's matrix, straight against every service's own port AND through the gateway: a service called on
its port must give the gateway's answer (ondas.authn.TokenCheck asks auth the gateway's question), and the device
manager's internal routes take a service identity verified by auth and nothing else.

Tokens: revoked (``POST /auth/revoke``), of a deleted user, from before a password change, of a read-only user
(profile ``user``) writing, of another tenant reading a device; internal routes without a token, with a user's
token, with a wrong key. Every answer is a refusal, and the direct one equals the gateway's.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from ondas.authn import ISSUER, TokenCheck
from ondas.errors import Forbidden, Unauthenticated, Unavailable
from ondas.service_identity import derive_service_key, service_authorization
from ondasctl.gateway import load_routes
from ondasctl.platform import GATEWAY_UPSTREAMS, SERVICE_IDENTITY_ROOT
from ondasctl.ports import free_port
from tests.e2e.helpers import api
from tests.e2e.test_tutorial import create_device
from tests.tokens import TokenMaker

pytestmark = pytest.mark.e2e

KONG = Path(__file__).resolve().parents[2] / "gateway" / "kong.yml"
DEVICE = "{device}"
TTL_S = 5.0  # CommonSettings.authz_cache_seconds: how long a direct port may still accept a revoked token
PASSWD = "direct-pass-1"


@dataclass(frozen=True)
class Case:
    """One request: ``path`` through the gateway; ``host`` (a kong.yml service host) and ``direct`` its path on
    that service's own port."""

    method: str
    path: str
    host: str
    direct: str
    body: Any = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path} [{self.host}]"


# Every service that takes user tokens, reads and writes.
READS = [
    Case("GET", "/device", "device-manager", "/device"),
    Case("GET", f"/device/{DEVICE}", "device-manager", f"/device/{DEVICE}"),
    Case("GET", "/template", "device-manager", "/template"),
    Case("GET", "/export", "device-manager", "/export"),
    Case("GET", f"/history/device/{DEVICE}/history?lastN=1", "history", f"/device/{DEVICE}/history?lastN=1"),
    Case("GET", f"/device/{DEVICE}/latest", "history", f"/device/{DEVICE}/latest"),
    Case("GET", "/http-agent/v1/statistics", "http-agent", "/http-agent/v1/statistics"),
    Case("GET", "/mqtt-agent/v1/statistics", "mqtt-agent", "/mqtt-agent/v1/statistics"),
    Case("GET", "/x509/v1/certificates", "x509-identity-mgmt", "/x509/v1/certificates"),
    Case("GET", "/x509/v1/ca", "x509-identity-mgmt", "/x509/v1/ca"),
    Case("GET", "/flows/v1/flow", "flowbroker", "/flows/v1/flow"),
    Case("GET", "/flows/nodes", "flowbroker", "/flows/nodes"),
]
# Bodies a permitted caller would get 400 for: nothing changes even if a refusal were missing (the test then fails
# on the status, 400 against the gateway's 403).
WRITES = [
    Case("POST", "/template", "device-manager", "/template", {}),
    Case("POST", "/import", "device-manager", "/import", {}),
    Case("POST", "/device", "device-manager", "/device", {}),
    Case("PUT", f"/device/{DEVICE}", "device-manager", f"/device/{DEVICE}", {}),
    Case("DELETE", "/template", "device-manager", "/template"),
    Case("PUT", "/http-agent/v1/log-level", "http-agent", "/http-agent/v1/log-level", {}),
    Case("PUT", "/mqtt-agent/v1/log-level", "mqtt-agent", "/mqtt-agent/v1/log-level", {}),
    Case("POST", "/x509/v1/certificates", "x509-identity-mgmt", "/x509/v1/certificates", {}),
    Case("POST", "/flows/v1/flow", "flowbroker", "/flows/v1/flow", {}),
    Case(
        "POST",
        f"/basic-auth/v1/devices/{DEVICE}/basic-credentials",
        "mqtt-agent",
        f"/basic-auth/v1/devices/{DEVICE}/basic-credentials",
    ),
]
# The device of another tenant.
OTHER_TENANT_READS = [
    Case("GET", f"/device/{DEVICE}", "device-manager", f"/device/{DEVICE}"),
    Case("GET", f"/history/device/{DEVICE}/history?lastN=1", "history", f"/device/{DEVICE}/history?lastN=1"),
    Case("GET", f"/device/{DEVICE}/latest", "history", f"/device/{DEVICE}/latest"),
    Case(
        "POST",
        f"/basic-auth/v1/devices/{DEVICE}/basic-credentials",
        "mqtt-agent",
        f"/basic-auth/v1/devices/{DEVICE}/basic-credentials",
    ),
]


@dataclass
class World:
    gateway: str
    direct: dict[str, str]  # kong.yml service host -> its local base URL
    device: str
    tokens: dict[str, str]
    secret: str
    changed_at: dict[str, float]  # token kind -> when it was revoked/its user deleted/its password changed

    def send(self, case: Case, token: str | None, via_gateway: bool) -> requests.Response:
        path = (case.path if via_gateway else case.direct).replace(DEVICE, self.device)
        base = self.gateway if via_gateway else self.direct[case.host]
        kwargs: dict[str, Any] = {} if case.body is None else {"json": case.body}
        return api(case.method, base + path, token, **kwargs)


def _login(gateway: str, username: str, passwd: str, tenant: str | None = None) -> str:
    body = {"username": username, "passwd": passwd, **({"service": tenant} if tenant else {})}
    r = requests.post(f"{gateway}/auth", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["jwt"])


def _past_ttl(world: World, kind: str) -> None:
    """Wait until the cache TTL has passed since ``kind``'s token lost its validity: each service process may
    reuse a permit it got before that for at most the TTL."""
    left = world.changed_at[kind] + TTL_S + 0.5 - time.monotonic()
    if left > 0:
        time.sleep(left)


@pytest.fixture(scope="module")
def world(platform) -> World:
    gw = platform.gateway
    admin = platform.token()
    _, device = create_device(platform, admin, label="direct-ports")
    direct = {host: f"http://127.0.0.1:{platform.port(comp)}" for host, comp in GATEWAY_UPSTREAMS.items()}
    tokens = {"admin": admin}
    names = {}
    for kind in ("reader", "revoked", "deleted", "pwchanged"):
        name = f"direct-{kind}-{uuid.uuid4().hex[:6]}"
        r = api("POST", f"{gw}/auth/user", admin, json={"username": name, "passwd": PASSWD, "profile": "user"})
        assert r.status_code == 200, r.text
        names[kind] = name
        tokens[kind] = _login(gw, name, PASSWD)
    # Another tenant and its administrator.
    tenant = "d" + uuid.uuid4().hex[:8]
    r = api(
        "POST", f"{gw}/auth/tenants", admin, json={"tenant": tenant, "admin": {"username": "boss", "passwd": PASSWD}}
    )
    assert r.status_code == 201, r.text
    tokens["other-tenant"] = _login(gw, "boss", PASSWD, tenant)
    tokens["garbage"] = "not.a.token"

    world = World(gw, direct, device, tokens, "", {})
    world.secret = (platform.data_dir / "secrets" / SERVICE_IDENTITY_ROOT).read_text().strip()
    # Each token works on a direct port first, so the services have cached a permit for it ...
    for kind in ("revoked", "deleted", "pwchanged"):
        assert api("GET", direct["device-manager"] + "/device", tokens[kind]).status_code == 200
        assert api("GET", direct["history"] + f"/device/{device}/latest", tokens[kind]).status_code in (200, 404)
    # ... then loses its validity through the gateway.
    assert api("POST", f"{gw}/auth/revoke", tokens["revoked"]).status_code == 200
    world.changed_at["revoked"] = time.monotonic()
    assert api("DELETE", f"{gw}/auth/user/{names['deleted']}", admin).status_code == 200
    world.changed_at["deleted"] = time.monotonic()
    r = api(
        "POST",
        f"{gw}/auth/password/update",
        tokens["pwchanged"],
        json={"oldpasswd": PASSWD, "newpasswd": "direct-pass-2-new"},
    )
    assert r.status_code == 200, r.text
    world.changed_at["pwchanged"] = time.monotonic()
    return world


@pytest.mark.parametrize("kind", ["revoked", "deleted", "pwchanged"])
def test_a_dead_token_stops_working_on_direct_ports_within_the_cache_ttl(world, kind):
    token = world.tokens[kind]
    assert api("GET", world.gateway + "/device", token).status_code == 401  # the gateway: at once
    _past_ttl(world, kind)
    # Every worker of every service (several requests: the device manager runs two gunicorn workers).
    for _ in range(6):
        assert api("GET", world.direct["device-manager"] + "/device", token).status_code == 401
        assert api("GET", world.direct["history"] + f"/device/{world.device}/latest", token).status_code == 401


def _compare(world: World, case: Case, token: str | None) -> tuple[int, int]:
    via = world.send(case, token, via_gateway=True)
    direct = world.send(case, token, via_gateway=False)
    return via.status_code, direct.status_code


@pytest.mark.parametrize("case", READS + WRITES, ids=lambda c: c.id)
@pytest.mark.parametrize("kind", ["none", "garbage", "revoked", "deleted", "pwchanged"])
def test_dead_and_missing_tokens_get_401_on_every_port(world, case, kind):
    if kind in world.changed_at:
        _past_ttl(world, kind)
    token = None if kind == "none" else world.tokens[kind]
    assert _compare(world, case, token) == (401, 401), (kind, case.id)


@pytest.mark.parametrize("case", WRITES, ids=lambda c: c.id)
def test_a_read_only_user_cannot_write_on_any_port(world, case):
    assert _compare(world, case, world.tokens["reader"]) == (403, 403), case.id


@pytest.mark.parametrize("case", READS, ids=lambda c: c.id)
def test_a_read_only_user_reads_on_every_port_as_through_the_gateway(world, case):
    via, direct = _compare(world, case, world.tokens["reader"])
    assert via == direct and via not in (401, 503), (case.id, via, direct)


@pytest.mark.parametrize("case", OTHER_TENANT_READS, ids=lambda c: c.id)
def test_another_tenant_gets_nothing_of_the_device_on_any_port(world, case):
    via, direct = _compare(world, case, world.tokens["other-tenant"])
    assert via == direct, (case.id, via, direct)
    assert not 200 <= via < 300, (case.id, via)


def _internal(world: World, suffix: str = "") -> str:
    return f"/internal/tenants/admin/devices{suffix}"


@pytest.mark.parametrize("one", [False, True], ids=["all", "one"])
def test_internal_routes_take_a_service_identity_and_nothing_else(world, one):
    path = _internal(world, f"/{world.device}" if one else "")
    dm = world.direct["device-manager"]
    agent_key = derive_service_key(world.secret, "mqtt-agent")
    refused = {
        "no token": {},
        "user token": {"Authorization": f"Bearer {world.tokens['admin']}"},
        "wrong key": {"Authorization": service_authorization("mqtt-agent", "0" * 64)},
        "another service's key": {"Authorization": service_authorization("http-agent", agent_key)},
        "unknown service": {"Authorization": service_authorization("nobody", derive_service_key("guess", "nobody"))},
        "malformed": {"Authorization": "Service mqtt-agent"},
    }
    for what, headers in refused.items():
        r = requests.get(dm + path, headers=headers, timeout=10)
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert world.device not in r.text
        # Not routed by the gateway at all.
        r = requests.get(world.gateway + path, headers=headers, timeout=10)
        assert not 200 <= r.status_code < 300 and world.device not in r.text, (what, r.status_code)
    ok = requests.get(dm + path, headers={"Authorization": service_authorization("mqtt-agent", agent_key)}, timeout=10)
    assert ok.status_code == 200, ok.text
    assert world.device in ok.text


def test_internal_actuation_takes_a_service_identity_and_nothing_else(world):
    path = _internal(world, f"/{world.device}/actuate")
    dm = world.direct["device-manager"]
    agent_key = derive_service_key(world.secret, "flowbroker")
    body = {"attrs": {"fan": 3}}
    for headers in (
        {},
        {"Authorization": f"Bearer {world.tokens['admin']}"},
        {"Authorization": service_authorization("flowbroker", "0" * 64)},
    ):
        assert requests.put(dm + path, json=body, headers=headers, timeout=10).status_code == 401, headers
        r = requests.put(world.gateway + path, json=body, headers=headers, timeout=10)
        assert not 200 <= r.status_code < 300, (headers, r.status_code)
    ok = requests.put(
        dm + path, json=body, headers={"Authorization": service_authorization("flowbroker", agent_key)}, timeout=10
    )
    assert ok.status_code == 200 and ok.json() == {"status": "configuration sent to device"}, ok.text


def test_auth_answers_who_a_service_is_and_nothing_else(world):
    auth = world.direct["auth"] + "/admin/service-identity"
    key = derive_service_key(world.secret, "http-agent")
    r = requests.get(auth, headers={"Authorization": service_authorization("http-agent", key)}, timeout=10)
    assert r.status_code == 200 and r.json() == {"service": "http-agent"}
    for headers in ({}, {"Authorization": f"Bearer {world.tokens['admin']}"}, {"Authorization": "Service x:y"}):
        assert requests.get(auth, headers=headers, timeout=10).status_code == 401
    # Not routed by the gateway.
    r = requests.get(
        world.gateway + "/auth/admin/service-identity",
        headers={"Authorization": service_authorization("http-agent", key)},
        timeout=10,
    )
    assert r.status_code != 200 and "http-agent" not in r.text


# -- the check itself, without the platform ---------------------------------------------------------------------
class _FakeAuth:
    """auth's /pdp/gateway and /admin/service-identity, counting calls; ``status`` is the verdict."""

    def __init__(self) -> None:
        self.status = 200
        self.calls: list[tuple[str, str | None, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.calls.append(
                    (self.path, self.headers.get("X-Original-Method"), self.headers.get("X-Original-URI"))
                )
                if self.path == "/admin/service-identity":
                    ok = self.headers.get("Authorization") == "Service svc:good"
                    status, body = (200, {"service": "svc"}) if ok else (401, {"message": "unknown service identity"})
                else:
                    status, body = fake.status, {"message": f"verdict {fake.status}"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_auth() -> Iterator[_FakeAuth]:
    fake = _FakeAuth()
    yield fake
    fake.close()


@pytest.fixture
def keys(tmp_path: Path) -> TokenMaker:
    return TokenMaker(tmp_path)


def _check(keys: TokenMaker, auth_url: str, **kw: Any) -> TokenCheck:
    public = keys.public_file.read_text()
    return TokenCheck(lambda: public, "full", auth_url, **kw)


def _bearer(keys: TokenMaker, **claims: Any) -> str:
    return f"Bearer {keys.token('acme', **{'iss': ISSUER, **claims})}"


def test_verdicts_are_cached_per_token_and_route_for_the_ttl(keys, fake_auth):
    check = _check(keys, fake_auth.url, cache_seconds=0.5)
    token = _bearer(keys)
    for _ in range(5):
        assert check.principal(token, "get", "/device").tenant == "acme"
    assert fake_auth.calls == [("/pdp/gateway", "GET", "/device")]
    check.principal(token, "POST", "/device")
    assert len(fake_auth.calls) == 2, "another method is another question"
    fake_auth.status = 401
    check.principal(token, "GET", "/device")  # still the cached permit
    time.sleep(0.6)
    with pytest.raises(Unauthenticated):
        check.principal(token, "GET", "/device")
    fake_auth.status = 403
    with pytest.raises(Forbidden):
        check.principal(token, "GET", "/template")


def test_the_uri_sent_to_auth_is_the_gateways(keys, fake_auth):
    from history.app import gateway_path

    check = _check(keys, fake_auth.url, gateway_path=gateway_path)
    check.principal(_bearer(keys), "GET", "/device/d1/history")
    check.principal(_bearer(keys), "GET", "/device/d1/latest")
    assert [uri for _, _, uri in fake_auth.calls] == ["/history/device/d1/history", "/device/d1/latest"]


def test_service_paths_map_back_to_the_path_the_gateway_checked():
    """For each protected route of kong.yml: the path a service receives, mapped back by the service's
    gateway_path, is the path the gateway asked auth about."""
    from history.app import gateway_path as history_path

    mapping: dict[str, Callable[[str], str]] = {"history": history_path}
    samples = {"/history": "/history/device/d1/history", "/device": "/device/d1", "/template": "/template/3"}
    for route in load_routes(KONG):
        if not route.protected or route.service.startswith("auth"):
            continue
        path = "/device/d1/latest" if route.is_regex else samples.get(route.path, route.path + "/x")
        received = route.upstream_path(path)
        assert mapping.get(route.host, lambda p: p)(received) == path, (route.name, path, received)


def test_no_answer_from_auth_is_a_503_never_a_pass(keys):
    check = _check(keys, f"http://127.0.0.1:{free_port()}", timeout_seconds=1.0)
    with pytest.raises(Unavailable):
        check.principal(_bearer(keys), "GET", "/device")
    with pytest.raises(Unavailable):
        check.service("Service svc:good")


def test_tokens_without_auths_issuer_or_signature_never_reach_auth(keys, fake_auth):
    check = _check(keys, fake_auth.url)
    other = TokenMaker(keys.public_file.parent / "other")
    for bad in (
        f"Bearer {keys.token('acme')}",  # no iss
        f"Bearer {keys.token('acme', iss='someone-else')}",
        f"Bearer {other.token('acme', iss=ISSUER)}",  # another key
        f"Bearer {jwt.encode({'service': 'acme', 'username': 'u', 'iss': ISSUER}, 'k' * 32, 'HS256')}",
        None,
        "Service svc:good",
    ):
        with pytest.raises(Unauthenticated):
            check.principal(bad, "GET", "/device")
    assert fake_auth.calls == []


def test_service_identities_are_verified_by_auth_and_cached(keys, fake_auth):
    check = _check(keys, fake_auth.url)
    assert check.service("Service svc:good") == "svc"
    assert check.service("Service svc:good") == "svc"
    for bad in ("Service svc:bad", "Service svc:bad"):
        with pytest.raises(Unauthenticated):
            check.service(bad)
    assert len(fake_auth.calls) == 2
    for not_service in (None, "", _bearer(keys)):
        with pytest.raises(Unauthenticated):
            check.service(not_service)
    assert len(fake_auth.calls) == 2
