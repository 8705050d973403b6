"""Malformed device messages over real MQTT: dropped, counted in metrics, logged with device and reason; the
agent keeps running and keeps forwarding good messages. Hostile HTTP input (deep JSON, control characters,
bodies over the limits, invalid UTF-8) on every JSON route of every service, through the gateway and straight to
each service's port: refused, in JSON, never a 5xx."""

from __future__ import annotations

import base64
import json
import re
import socket
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.e2e.helpers import api, mosquitto_pub, poll
from tests.e2e.test_tutorial import create_device, history

pytestmark = pytest.mark.e2e

BAD = {
    "not_json": b"temperature=10",
    "not_object": b"[1, 2, 3]",
    "too_large": json.dumps({"blob": "x" * 200_000}).encode(),
    "too_deep": b'{"a": ' * 100 + b"1" + b"}" * 100,
}


def dropped(platform, reason: str) -> float:
    text = requests.get(f"http://127.0.0.1:{platform.port('mqtt_agent')}/metrics", timeout=5).text
    m = re.search(rf'mqtt_agent_messages_dropped_total{{reason="{reason}",tenant="admin"}} ([0-9.e+]+)', text)
    m = m or re.search(rf'mqtt_agent_messages_dropped_total{{tenant="admin",reason="{reason}"}} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


def agent_pid(platform) -> int:
    status = json.loads(platform.ctl("status", "--format", "json", check=False).stdout)
    return next(p["pid"] for p in status["processes"] if p["name"] == "mqtt-agent")


def test_malformed_payloads_are_dropped_counted_and_logged(platform):
    token = platform.token()
    _, device_id = create_device(platform, token, label="noisy")
    identity = f"admin:{device_id}"
    pid_before = agent_pid(platform)
    before = {reason: dropped(platform, reason) for reason in BAD}

    for payload in BAD.values():
        mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", payload)

    for reason in BAD:
        poll(lambda r=reason: dropped(platform, r), lambda v, r=reason: v >= before[r] + 1)

    log_lines = [json.loads(line) for line in platform.log("mqtt-agent").splitlines() if line.startswith("{")]
    logged = {(e.get("device"), e.get("reason")) for e in log_lines if e.get("msg") == "message dropped"}
    for reason in BAD:
        assert (device_id, reason) in logged, reason

    # Nothing reached history, the agent did not restart, and a good message still flows.
    r = history(platform, token, device_id, "lastN=5")
    assert r.status_code == 404 or not any(r.json().values() if isinstance(r.json(), dict) else r.json())
    mosquitto_pub(platform.mqtt_port, identity, f"{identity}/attrs", json.dumps({"temperature": 21.0}))
    r = poll(
        lambda: history(platform, token, device_id, "lastN=1&attr=temperature"),
        lambda r: r.status_code == 200 and len(r.json()) == 1,
    )
    assert r.json()[0]["value"] == 21.0
    assert agent_pid(platform) == pid_before
    assert requests.get(f"http://127.0.0.1:{platform.port('mqtt_agent')}/health/ready", timeout=5).status_code == 200


def test_unknown_devices_are_refused(platform):
    token = platform.token()
    before = dropped(platform, "unknown_device")
    mosquitto_pub(platform.mqtt_port, "admin:ffffff", "admin:ffffff/attrs", json.dumps({"temperature": 5}))
    poll(lambda: dropped(platform, "unknown_device"), lambda v: v >= before + 1)
    assert api("GET", f"{platform.gateway}/device/ffffff", token).status_code == 404


# -- hostile HTTP input on every JSON route of every service, through the gateway and straight to its port ----------
# What the attack run sent: JSON nested 1,000 levels deep (a RecursionError, 500, before ondas.jsonbody), control
# characters in the path and in header values (the PDP wrote them into X-Ondas-Reason: 500), bodies over each
# service's limit, and bodies that are not UTF-8. Every answer must be a refusal, never a 5xx, and in JSON.
DEEP_ARRAY = b"[" * 1000 + b"]" * 1000
DEEP_OBJECT = b'{"a":' * 1000 + b"1" + b"}" * 1000
NOT_UTF8 = b'{"label": "\xff\xfe\xc3"}'
GATEWAY_LIMIT = 2 << 20  # client_max_body_size of the rendered nginx
# Each service's own body limit (create_app's max_body_bytes).
LIMITS = {"auth": 1 << 20, "device_manager": 16 << 20, "http_agent": 262144, "mqtt_agent_api": 4096}


@dataclass(frozen=True)
class Route:
    method: str
    gateway: str | None  # the path through the gateway; None: not routed there (an internal route)
    component: str  # the ondasctl.config.PORTS name of the service's own port
    direct: str
    caller: str | None = "user"  # "user": the admin's token; "device": the device's HTTP Basic credentials

    @property
    def id(self) -> str:
        return f"{self.method} {self.gateway or self.direct} [{self.component}]"


JSON_ROUTES = [
    Route("POST", "/auth", "auth", "/", caller=None),
    Route("POST", "/auth/user", "auth", "/user"),
    Route("PUT", "/auth/user/admin", "auth", "/user/admin"),
    Route("POST", "/auth/pap/group", "auth", "/pap/group"),
    Route("POST", "/auth/pap/permission", "auth", "/pap/permission"),
    Route("POST", "/auth/password/resetlink", "auth", "/password/resetlink", caller=None),
    Route("POST", "/auth/password/update", "auth", "/password/update"),
    Route("POST", "/auth/tenants", "auth", "/tenants"),
    Route("POST", None, "auth", "/pdp", caller=None),
    Route("POST", "/template", "device_manager", "/template"),
    Route("PUT", "/template/1", "device_manager", "/template/1"),
    Route("POST", "/device", "device_manager", "/device"),
    Route("PUT", "/device/{device}", "device_manager", "/device/{device}"),
    Route("PUT", "/device/{device}/actuate", "device_manager", "/device/{device}/actuate"),
    Route("POST", "/import", "device_manager", "/import"),
    Route("POST", "/http-agent/v1/incoming-messages", "http_agent", "/http-agent/v1/incoming-messages", "device"),
    Route(
        "POST",
        "/http-agent/v1/incoming-messages/create-many",
        "http_agent",
        "/http-agent/v1/incoming-messages/create-many",
        "device",
    ),
    Route("PUT", "/http-agent/v1/log-level", "http_agent", "/http-agent/v1/log-level"),
    Route("PUT", "/mqtt-agent/v1/log-level", "mqtt_agent_api", "/mqtt-agent/v1/log-level"),
]

# Read routes of every service, for control characters (history has no JSON body to send).
GET_ROUTES = [
    ("/auth/user", "auth", "/user"),
    ("/auth/user/{device}", "auth", "/user/{device}"),
    ("/device", "device_manager", "/device"),
    ("/device/{device}", "device_manager", "/device/{device}"),
    ("/template/{device}", "device_manager", "/template/{device}"),
    ("/history/device/{device}/history", "history", "/device/{device}/history"),
    ("/http-agent/v1/statistics", "http_agent", "/http-agent/v1/statistics"),
    ("/mqtt-agent/v1/statistics", "mqtt_agent_api", "/mqtt-agent/v1/statistics"),
]


@dataclass
class Callers:
    token: str
    device_id: str
    device_auth: tuple[str, str]


@pytest.fixture(scope="module")
def callers(platform) -> Callers:
    token = platform.token()
    _, device_id = create_device(platform, token, label="hostile-input")
    r = api("POST", f"{platform.gateway}/basic-auth/v1/devices/{device_id}/basic-credentials", token)
    assert r.status_code in (200, 201), r.text
    return Callers(token, device_id, (f"admin:{device_id}", r.json()["password"]))


def _headers(route_caller: str | None, callers: Callers) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if route_caller == "user":
        headers["Authorization"] = f"Bearer {callers.token}"
    elif route_caller == "device":
        user, password = callers.device_auth
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return headers


def _targets(platform, route: Route, callers: Callers) -> list[tuple[str, str]]:
    """(where, URL) of the route through the gateway (when routed) and on its service's own port."""
    direct = route.direct.replace("{device}", callers.device_id)
    out = [("direct", f"http://127.0.0.1:{platform.port(route.component)}{direct}")]
    if route.gateway is not None:
        out.append(("gateway", platform.gateway + route.gateway.replace("{device}", callers.device_id)))
    return out


def assert_json_refusal(r: requests.Response, where: str, what: str) -> dict[str, Any]:
    assert r.status_code < 500, f"{what} via {where}: {r.status_code} {r.text[:300]}"
    assert 400 <= r.status_code, f"{what} via {where}: {r.status_code} {r.text[:300]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), f"{what} via {where}: {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), f"{what} via {where}: {body}"
    return body


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: r.id)
@pytest.mark.parametrize(
    ("name", "payload"), [("deep array", DEEP_ARRAY), ("deep object", DEEP_OBJECT), ("not UTF-8", NOT_UTF8)]
)
def test_hostile_json_bodies_are_refused_with_a_400(platform, callers, route, name, payload):
    for where, url in _targets(platform, route, callers):
        r = requests.request(route.method, url, data=payload, headers=_headers(route.caller, callers), timeout=30)
        assert_json_refusal(r, where, f"{name} to {route.id}")
        if len(payload) > LIMITS[route.component]:
            assert r.status_code == 413, f"{name} to {route.id} via {where}: {r.status_code} {r.text[:300]}"
            continue
        assert r.status_code in (400, 401, 403, 404, 422), f"{name} to {route.id} via {where}: {r.text[:300]}"
        if route.caller != "device" or r.status_code == 400:
            # The body was read (the caller is allowed): the JSON rule answered, with a 400.
            assert r.status_code == 400, f"{name} to {route.id} via {where}: {r.status_code} {r.text[:300]}"


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: r.id)
def test_bodies_over_each_limit_are_refused_with_a_413(platform, callers, route):
    limit = LIMITS[route.component]
    for where, url in _targets(platform, route, callers):
        size = (min(limit, GATEWAY_LIMIT) if where == "gateway" else limit) + 1024
        payload = b'{"blob": "' + b"x" * size + b'"}'
        r = requests.request(route.method, url, data=payload, headers=_headers(route.caller, callers), timeout=60)
        body = assert_json_refusal(r, where, f"{size} bytes to {route.id}")
        assert r.status_code == 413, f"{size} bytes to {route.id} via {where}: {r.status_code} {body}"


def _raw_get(port: int, target: str, headers: dict[str, str], extra: bytes = b"") -> tuple[int, bytes, bytes]:
    """A request sent byte for byte (client libraries refuse or re-encode what an attacker sends)."""
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    data = "\r\n".join(lines).encode() + b"\r\n" + extra + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def _gateway_port(platform) -> int:
    return int(platform.gateway.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.mark.parametrize(("gateway_path", "component", "direct"), GET_ROUTES, ids=[g for g, _, _ in GET_ROUTES])
@pytest.mark.parametrize("escape", ["%0a", "%0d", "%00", "%0d%0aSet-Cookie:%20x=1", "%7f"])
@pytest.mark.parametrize("part", ["segment", "parameter", "query"])
def test_control_characters_in_paths_are_refused(platform, callers, gateway_path, component, direct, escape, part):
    """Through the gateway: its JSON 400. Straight to the port: the route's own 4xx (no route matches such a
    path, a path parameter holding one is refused by its route), never a 5xx."""
    if part == "parameter" and "{device}" not in gateway_path:
        pytest.skip("no path parameter")
    device = f"{callers.device_id}{escape}x" if part == "parameter" else callers.device_id
    auth = {"Authorization": f"Bearer {callers.token}"}
    targets = [
        ("gateway", _gateway_port(platform), gateway_path.replace("{device}", device)),
        ("direct", platform.port(component), direct.replace("{device}", device)),
    ]
    for where, port, path in targets:
        target = {"segment": f"{path}/x{escape}y", "query": f"{path}?q={escape}"}.get(part, path)
        status, head, body = _raw_get(port, target, auth)
        what = f"{target} via {where}: {status} {body[:300]!r}"
        assert status < 500, what
        assert b"\r\nset-cookie" not in head.lower(), what
        doc = json.loads(body)
        if where == "gateway":
            assert status == 400 and set(doc) == {"error", "message"}, what
        elif part == "query":
            pass  # a parameter no route reads is ignored, as any other: the route's usual answer, below 500
        else:
            assert 400 <= status < 500 and isinstance(doc.get("error"), str), what


@pytest.mark.parametrize(("gateway_path", "component", "direct"), GET_ROUTES, ids=[g for g, _, _ in GET_ROUTES])
@pytest.mark.parametrize("value", ["a\x01b", "a\x1bb", "a\x7fb", "a\x0bb"], ids=repr)
def test_control_characters_in_header_values_are_refused(platform, callers, gateway_path, component, direct, value):
    for where, port, path in [
        ("gateway", _gateway_port(platform), gateway_path.replace("{device}", callers.device_id)),
        ("direct", platform.port(component), direct.replace("{device}", callers.device_id)),
    ]:
        headers = {"Authorization": f"Bearer {callers.token}", "X-Request-Id": value}
        status, _, body = _raw_get(port, path, headers)
        what = f"X-Request-Id {value!r} to {path} via {where}: {status} {body[:300]!r}"
        assert status == 400, what
        if where == "gateway":
            assert set(json.loads(body)) == {"error", "message"}, what
        # Straight to a port, gunicorn refuses such a header itself (RFC 9110 5.5) before the app runs: its own
        # plain 400; services not behind gunicorn answer the platform's JSON 400 (ondas.web).


def test_the_gateways_own_errors_are_json(platform):
    port = _gateway_port(platform)
    # Not HTTP at all, an unknown route, a URI over nginx's buffers, a body over its limit.
    status, _, body = _raw_get(port, "/x", {}, b"Bad\x00Header: 1\r\n")
    assert status == 400 and set(json.loads(body)) == {"error", "message"}, body
    r = requests.get(f"{platform.gateway}/no-such-route", timeout=10)
    assert r.status_code == 404 and set(r.json()) == {"error", "message"}
    r = requests.get(f"{platform.gateway}/device/{'x' * 20000}", timeout=10)
    assert r.status_code == 414 and r.json()["error"] == "uri_too_long"
    r = requests.post(f"{platform.gateway}/device", data=b"x" * (GATEWAY_LIMIT + 1), timeout=60)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


def test_the_platform_still_works_after_the_hostile_input(platform, callers):
    r = api("GET", f"{platform.gateway}/device/{callers.device_id}", callers.token)
    assert r.status_code == 200, r.text
    for component in ("auth", "device_manager", "history", "http_agent", "mqtt_agent_api"):
        assert requests.get(f"http://127.0.0.1:{platform.port(component)}/health/live", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "uri", ["/device/a%0d%0aSet-Cookie:%20x=1", "/device/%0a", "/device/%00", "/device/%7f", "/device/%C3%A9%22%5C"]
)
def test_the_pdp_never_writes_request_data_raw_into_a_header(platform, callers, uri):
    """The gateway's question straight to auth (the attack run's 500): refused or decided, with a header-safe
    X-Ondas-Reason."""
    status, head, body = _raw_get(
        platform.port("auth"),
        "/pdp/gateway",
        {"Authorization": f"Bearer {callers.token}", "X-Original-Method": "GET", "X-Original-URI": uri},
    )
    assert status in (200, 403), body
    assert b"\r\nset-cookie" not in head.lower()
    reason = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-ondas-reason:")]
    for line in reason:
        assert all(0x20 <= c <= 0x7E for c in line), line
    if "%C3" not in uri:  # NUL has its own reason ("must not contain NUL characters")
        assert status == 403 and reason, head
        assert b"control characters" in reason[0] or b"NUL" in reason[0], head
