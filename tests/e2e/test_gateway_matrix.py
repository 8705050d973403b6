"""The gateway's route table, route by route, through the local gateway rendered from gateway/kong.yml.

The cases are generated from kong.yml: every protected route refuses missing and bad tokens (401) and tokens
without permission (403) with the gateway's own refusal, and takes a permitted request to the service it names,
rewritten as Kong would (the answer equals the service's own answer to the rewritten request); every public
route reaches its service without a token. Auth's internal routes are not reachable, and the login route is
rate limited (on a gateway of its own, rendered from the same file without the suite's override).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ondas.service_identity import derive_service_key, service_authorization
from ondasctl.gateway import Route, load_routes
from ondasctl.platform import GATEWAY_UPSTREAMS, SERVICE_IDENTITY_ROOT
from tests.e2e.helpers import api
from tests.e2e.test_tutorial import create_device

pytestmark = pytest.mark.e2e

KONG = Path(__file__).resolve().parents[2] / "gateway" / "kong.yml"
ROUTES = load_routes(KONG)
PROTECTED = [r for r in ROUTES if r.protected]
PUBLIC = [r for r in ROUTES if not r.protected]
DEVICE = "{device}"  # replaced by a real device id of the admin's tenant

# Request paths that show a route at work (default: the route's own prefix). Regex routes get a path built from
# their regex, checked against it below.
SAMPLES = {
    "/auth/pap": "/auth/pap/group",
    "/device": f"/device/{DEVICE}",
    "/history": f"/history/device/{DEVICE}/history?lastN=1&attr=temperature",
    "/x509/v1": "/x509/v1/certificates",
    "/flows/v1": "/flows/v1/flow",
}
# Public routes: a request without a token that the service itself answers.
PUBLIC_REQUESTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "auth-login": ("POST", {"username": "matrix-nobody", "passwd": "not-the-password"}),
    "auth-revoke": ("POST", None),
    "auth-password": ("POST", {"oldpasswd": "a", "newpasswd": "b"}),
    "auth-tenants": ("GET", None),
    "http-agent": ("POST", None),
    "kafka-ws-websockets": ("GET", None),
}

ONE_TIME_VALUES = ("ticket", "token")  # a fresh one per request: compared by shape, not value


def _sample(route: Route) -> str:
    if not route.is_regex:
        return SAMPLES.get(route.path, route.path)
    path = route.path[1:].lstrip("^").replace("[^/]+", DEVICE).replace("/?", "").rstrip("$")
    assert re.match(route.regex, path.replace(DEVICE, "d1")), f"no sample path for {route.path}; add one"
    return path


def _id(route: Route) -> str:
    return f"{route.name}:{route.path}"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass
class World:
    gateway: str
    direct: dict[str, str]  # service URL host -> its local base URL
    device: str
    tokens: dict[str, str]
    service_auth: str

    def url(self, path: str) -> str:
        return self.gateway + path.replace(DEVICE, self.device)

    def upstream(self, route: Route, path: str) -> str:
        """Where Kong sends ``path`` (Kong's v0 path handling, written out here independently of the renderer)."""
        path = path.replace(DEVICE, self.device)
        raw, _, query = path.partition("?")
        if route.strip_path:
            m = re.match(route.regex if route.is_regex else re.escape(route.path), raw)
            assert m, (route.path, raw)
            rest = raw[m.end() :]
            base = route.service_path
            raw = (base.rstrip("/") + "/" + rest.lstrip("/")) if base.endswith("/") else (base + rest or "/")
        elif route.service_path != "/":
            raw = route.service_path + raw
        return self.direct[route.host] + raw + (f"?{query}" if query else "")


def _login(gateway: str, username: str, passwd: str) -> str:
    r = requests.post(f"{gateway}/auth", json={"username": username, "passwd": passwd}, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["jwt"])


@pytest.fixture(scope="module")
def world(platform) -> World:
    gw = platform.gateway
    admin = platform.token()
    _, device = create_device(platform, admin, label="matrix")
    # A plain user (profile "user": reads, no writes) and a second one whose token gets revoked.
    users = {}
    for role in ("reader", "revoked"):
        name = f"matrix-{role}-{uuid.uuid4().hex[:6]}"
        r = api("POST", f"{gw}/auth/user", admin, json={"username": name, "passwd": "matrix-pass-1", "profile": "user"})
        assert r.status_code == 200, r.text
        users[role] = _login(gw, name, "matrix-pass-1")
    assert api("POST", f"{gw}/auth/revoke", users["revoked"]).status_code == 200

    claims = jwt.decode(admin, options={"verify_signature": False})
    header = jwt.get_unverified_header(admin)
    private = (platform.data_dir / "keys" / "jwt-private.pem").read_text()
    public = (platform.data_dir / "keys" / "jwt-public.pem").read_text()
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = admin.split(".")[1]
    reader_head, _, reader_sig = users["reader"].split(".")
    reader_claims = jwt.decode(users["reader"], options={"verify_signature": False})
    forged_body = _b64({**reader_claims, "profile": "admin", "groups": claims["groups"]})
    kid = {k: v for k, v in header.items() if k == "kid"}
    tokens = {
        "admin": admin,
        "reader": users["reader"],
        "revoked": users["revoked"],
        # Signed with the platform's key; only the expiry is wrong.
        "expired": jwt.encode({**claims, "iat": now - 600, "exp": now - 300}, private, "RS256", headers=kid),
        # The reader's token with its claims changed and its signature kept.
        "forged": f"{reader_head}.{forged_body}.{reader_sig}",
        "wrong-key": jwt.encode(claims, other_pem, "RS256", headers=kid),
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "hs256-public-key": _hs256(claims, public),
        "garbage": "not.a.token",
    }
    direct = {host: f"http://127.0.0.1:{platform.port(comp)}" for host, comp in GATEWAY_UPSTREAMS.items()}
    secret = (platform.data_dir / "secrets" / SERVICE_IDENTITY_ROOT).read_text().strip()
    service_auth = service_authorization("device-manager", derive_service_key(secret, "device-manager"))
    return World(gw, direct, device, tokens, service_auth)


def _hs256(claims: dict[str, Any], secret: str) -> str:
    """HS256 signed with the public key as the secret (the algorithm-confusion attack), built by hand because
    PyJWT refuses to use a PEM key as an HMAC secret."""
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _same_answer(a: requests.Response, b: requests.Response) -> bool:
    def body(r: requests.Response) -> Any:
        try:
            got = r.json()
        except ValueError:
            return r.text
        if isinstance(got, dict):
            return {k: (len(v) if k in ONE_TIME_VALUES and isinstance(v, str) else v) for k, v in got.items()}
        return got

    return (a.status_code, body(a)) == (b.status_code, body(b))


def test_the_matrix_covers_every_route_of_kong_yml():
    assert {r.name for r in ROUTES} >= {
        "auth-login",
        "auth-user",
        "auth-pap",
        "device-manager",
        "device-manager-configuration",
        "history",
        "history-latest",
    }
    assert set(PUBLIC_REQUESTS) == {r.name for r in PUBLIC}, "every public route needs a request in the matrix"


BAD_TOKENS = ["none", "expired", "forged", "wrong-key", "alg-none", "hs256-public-key", "garbage", "revoked"]


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize("route", PROTECTED, ids=_id)
def test_protected_route_refuses_missing_and_bad_tokens(world, route, kind):
    token = None if kind == "none" else world.tokens[kind]
    r = api("GET", world.url(_sample(route)), token)
    assert r.status_code == 401, (kind, r.status_code, r.text)
    assert r.json()["error"] == "unauthenticated"
    assert r.headers.get("X-Ondas-Reason"), "the refusal comes from the gateway's delegation to the PDP"
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.mark.parametrize("route", PROTECTED, ids=_id)
def test_protected_route_refuses_a_valid_token_without_permission(world, route):
    # Profile "user" may read but not create anything.
    r = api("POST", world.url(_sample(route)), world.tokens["reader"], json={})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"
    assert r.headers.get("X-Ondas-Reason")


@pytest.mark.parametrize("route", PROTECTED, ids=_id)
def test_protected_route_takes_a_permitted_request_to_its_service(world, route):
    path = _sample(route)
    token = world.tokens["admin"]
    via_gateway = api("GET", world.url(path), token)
    direct = api("GET", world.upstream(route, path), token)
    assert "X-Ondas-Reason" not in via_gateway.headers
    assert via_gateway.status_code not in (401, 403), via_gateway.text
    assert _same_answer(via_gateway, direct), (via_gateway.status_code, via_gateway.text, direct.text)


@pytest.mark.parametrize("route", PUBLIC, ids=_id)
def test_public_route_reaches_its_service_without_a_token(world, route):
    method, body = PUBLIC_REQUESTS[route.name]
    path = _sample(route)
    via_gateway = api(method, world.url(path), json=body)
    direct = api(method, world.upstream(route, path), json=body)
    assert "X-Ondas-Reason" not in via_gateway.headers, "a public route must not ask the PDP"
    assert _same_answer(via_gateway, direct), (via_gateway.status_code, via_gateway.text, direct.text)


def test_latest_values_go_to_history_and_the_device_to_the_device_manager(world):
    token = world.tokens["admin"]
    latest = api("GET", world.url(f"/device/{DEVICE}/latest"), token)
    assert _same_answer(latest, api("GET", f"{world.direct['history']}/device/{world.device}/latest", token))
    dm_latest = api("GET", f"{world.direct['device-manager']}/device/{world.device}/latest", token)
    assert not _same_answer(latest, dm_latest), "history and the device manager answer differently here"
    device = api("GET", world.url(f"/device/{DEVICE}"), token)
    assert device.status_code == 200 and device.json()["id"] == world.device


def test_permitted_requests_reach_the_service_with_the_caller_named_by_the_gateway(world):
    # A client's own X-Ondas-Tenant is replaced by the PDP's answer: the admin still sees its own device.
    r = api("GET", world.url(f"/device/{DEVICE}"), world.tokens["admin"], headers={"X-Ondas-Tenant": "other"})
    assert r.status_code == 200 and r.json()["id"] == world.device


INTERNAL = [
    "/auth/admin/tenants",
    "/auth/pdp/gateway",
    "/auth/pdp",
    "/admin/tenants",
    "/pdp/gateway",
    "/auth/user/../admin/tenants",
    "/auth/user/%2e%2e/admin/tenants",
    "/auth/revoke/../admin/tenants",
    "/auth/tenants/..%2f..%2fadmin%2ftenants",
    "//auth//admin/tenants",
    "/auth/./admin/tenants",
]


@pytest.mark.parametrize("path", INTERNAL)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_internal_auth_routes_are_not_reachable_through_the_gateway(world, path, method):
    # With the device manager's own service identity: were the route there, auth would answer it.
    url = world.gateway + path
    body = {"tenant": "matrix_sneaky"} if method == "POST" else None
    r = requests.request(
        method, url, headers={"Authorization": world.service_auth}, json=body, timeout=10, allow_redirects=False
    )
    assert r.status_code != 200 and r.status_code != 201, (r.status_code, r.text)
    assert "tenants" not in r.text
    listed = api("GET", f"{world.direct['auth']}/admin/tenants", headers={"Authorization": world.service_auth})
    assert listed.status_code == 200 and "matrix_sneaky" not in listed.text
    # The admin's token is no key either.
    r = api(method, url, world.tokens["admin"], json=body)
    assert r.status_code not in (200, 201), (r.status_code, r.text)


def test_dojots_pdp_is_not_routed():
    assert not any(re.match(r.regex, "/auth/pdp") if r.is_regex else "/auth/pdp".startswith(r.path) for r in ROUTES)


# -- login rate limit (acceptance 4) ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited_gateway(platform, tmp_path_factory):
    """A gateway of its own, started by the platform's own spec from kong.yml, without the suite's override."""
    from ondasctl.config import Config
    from ondasctl.platform import gateway_spec
    from ondasctl.ports import free_port
    from ondasctl.procs import Proc

    ports = json.loads((platform.data_dir / "run" / "ports.json").read_text())
    data_dir = tmp_path_factory.mktemp("limited-gateway")
    data_dir.chmod(0o755)
    cfg = Config(data_dir=data_dir, ports={**ports, "gateway": free_port()})
    assert cfg.gateway_rate_limit is None
    (data_dir / "logs").mkdir()
    proc = Proc(gateway_spec(cfg))
    proc.start()
    try:
        proc.wait_ready(30)
        yield f"http://127.0.0.1:{cfg.ports['gateway']}"
    finally:
        proc.stop()


def test_the_sixth_login_within_a_minute_gets_429(limited_gateway, world):
    limit = next(r.rate_limit for r in ROUTES if r.name == "auth-login" and r.rate_limit)
    assert limit is not None and limit.limit == 5 and limit.window == "minute"
    attempts = [
        ("admin", "admin"),
        ("admin", "wrong-password"),
        ("admin", "admin"),
        ("matrix-nobody", "x"),
        ("admin", "admin"),
    ]
    statuses = [
        requests.post(f"{limited_gateway}/auth", json={"username": u, "passwd": p}, timeout=10).status_code
        for u, p in attempts
    ]
    assert statuses == [200, 401, 200, 401, 200]
    sixth = requests.post(f"{limited_gateway}/auth", json={"username": "admin", "passwd": "admin"}, timeout=10)
    assert sixth.status_code == 429, sixth.text
    assert sixth.json()["error"] == "rate_limited"
    assert int(sixth.headers["Retry-After"]) > 0
    # Only the login route is limited: the rest of the API still answers this client.
    r = api("GET", f"{limited_gateway}/device/{world.device}", world.tokens["admin"])
    assert r.status_code == 200


def test_the_limit_is_replaced_by_the_suites_override_on_the_platform_gateway(world):
    # The platform under test was started with ONDAS_GATEWAY_RATE_LIMIT: many logins in a row all pass.
    statuses = [
        requests.post(f"{world.gateway}/auth", json={"username": "admin", "passwd": "admin"}, timeout=10).status_code
        for _ in range(7)
    ]
    assert statuses == [200] * 7


# -- the Kong plugin against the real PDP ------------------------------------------------------------------------
def test_the_kong_plugin_gets_the_real_pdps_decisions(world):
    import os

    from tests.unit.gateway.test_kong_plugin import run_busted

    env = {
        **os.environ,
        "ONDAS_PDP_URL": f"{world.direct['auth']}/pdp/gateway",
        "ONDAS_ADMIN_TOKEN": world.tokens["admin"],
        "ONDAS_READER_TOKEN": world.tokens["reader"],
        "ONDAS_REVOKED_TOKEN": world.tokens["revoked"],
    }
    out = run_busted("--pattern=pdp_live", "spec", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len([line for line in out.stdout.splitlines() if line.startswith("ok ")]) == 6, out.stdout
