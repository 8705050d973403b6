import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ondasctl.gateway import KongConfigError, Route, load_routes, render_nginx

pytestmark = pytest.mark.unit

KONG = Path(__file__).resolve().parents[3] / "gateway" / "kong.yml"
UPSTREAMS = {
    "auth": "127.0.0.1:1",
    "device-manager": "127.0.0.1:2",
    "history": "127.0.0.1:3",
    "http-agent": "127.0.0.1:4",
    "mqtt-agent": "127.0.0.1:5",
    "x509-identity-mgmt": "127.0.0.1:6",
    "kafka-ws": "127.0.0.1:7",
    "flowbroker": "127.0.0.1:8",
}


def render(kong_file: Path = KONG, **kw) -> str:
    return render_nginx(
        kong_file=kong_file,
        listen="127.0.0.1:8000",
        upstreams=UPSTREAMS,
        prefix=Path("/p"),
        error_log=Path("/p/e"),
        access_log=Path("/p/a"),
        **kw,
    )


def kong(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "kong.yml"
    path.write_text('_format_version: "3.0"\n' + body)
    return path


def matches(route: Route, path: str) -> bool:
    return bool(re.match(route.regex, path)) if route.is_regex else path.startswith(route.path)


def route_for(routes: list[Route], path: str) -> Route | None:
    """Kong's choice: a matching regex path first, else the longest matching prefix."""
    regex = [r for r in routes if r.is_regex and matches(r, path)]
    if regex:
        return regex[0]
    prefix = sorted((r for r in routes if not r.is_regex and matches(r, path)), key=lambda r: -len(r.path))
    return prefix[0] if prefix else None


ROUTES = load_routes(KONG)


@pytest.mark.parametrize(
    ("path", "service", "protected", "upstream"),
    [
        ("/auth", "auth", False, "/"),
        ("/auth/", "auth", False, "/"),
        ("/auth/revoke", "auth-revoke", False, "/revoke"),
        ("/auth/user", "auth-user", True, "/user"),
        ("/auth/user/alice", "auth-user", True, "/user/alice"),
        ("/auth/pap/group/admin/permissions", "auth-pap", True, "/pap/group/admin/permissions"),
        ("/auth/password/update", "auth-password", False, "/password/update"),
        ("/auth/password/resetlink", "auth-password", False, "/password/resetlink"),
        ("/auth/tenants/acme", "auth-tenants", False, "/tenants/acme"),
        ("/device", "device-manager", True, "/device"),
        ("/device/ab12/actuate", "device-manager", True, "/device/ab12/actuate"),
        ("/template/3", "device-manager", True, "/template/3"),
        ("/export", "device-manager", True, "/export"),
        ("/import", "device-manager", True, "/import"),
        ("/history/device/ab12/history", "history", True, "/device/ab12/history"),
        ("/device/ab12/latest", "history", True, "/device/ab12/latest"),
        # Devices authenticate at the HTTP agent with their own credentials: a public route.
        ("/http-agent/v1/incoming-messages", "http-agent", False, "/http-agent/v1/incoming-messages"),
        (
            "/http-agent/v1/incoming-messages/create-many",
            "http-agent",
            False,
            "/http-agent/v1/incoming-messages/create-many",
        ),
        # Live data: tickets and tokens need a user token; the websockets take the service's own ticket.
        ("/kafka-ws/v1/ticket", "kafka-ws", True, "/kafka-ws/v1/ticket"),
        ("/kafka-ws/v1/topics/admin.device-data", "kafka-ws", False, "/kafka-ws/v1/topics/admin.device-data"),
        ("/stream/socketio", "kafka-ws", True, "/stream/socketio"),
        ("/topic/device-data", "kafka-ws", True, "/topic/device-data"),
        ("/socket.io/", "kafka-ws", False, "/socket.io/"),
        # Flows: dojot's paths, unchanged, through the PDP.
        ("/flows/v1/flow", "flowbroker", True, "/flows/v1/flow"),
        ("/flows/v1/flow/f1", "flowbroker", True, "/flows/v1/flow/f1"),
        ("/flows/v1/node", "flowbroker", True, "/flows/v1/node"),
        ("/flows/nodes", "flowbroker", True, "/flows/nodes"),
    ],
)
def test_route_table_of_the_seed(path, service, protected, upstream):
    route = route_for(ROUTES, path)
    assert route is not None, path
    assert (route.service, route.protected, route.upstream_path(path)) == (service, protected, upstream)


@pytest.mark.parametrize(
    "path", ["/auth/admin/tenants", "/auth/pdp/gateway", "/auth/pdp", "/admin/tenants", "/pdp/gateway", "/authx"]
)
def test_auths_internal_routes_have_no_route(path):
    assert route_for(ROUTES, path) is None


def test_only_login_is_rate_limited_five_a_minute_per_client():
    limited = [r for r in ROUTES if r.rate_limit]
    assert [r.name for r in limited] == ["auth-login"]
    assert limited[0].rate_limit is not None
    assert (limited[0].rate_limit.limit, limited[0].rate_limit.window) == (5, "minute")


def test_every_protected_route_asks_auths_gateway_pdp():
    assert {r.pdp_url for r in ROUTES if r.protected} == {"http://auth:5000/pdp/gateway"}


@pytest.mark.parametrize(
    ("service_path", "route_path", "request_path", "strip", "upstream"),
    [
        # Kong's documented path handling v0.
        ("/s", "/fv0", "/fv0req", True, "/sreq"),
        ("/s", "/fv0", "/fv0/req", True, "/s/req"),
        ("/s/", "/fv0", "/fv0req", True, "/s/req"),
        ("/s/", "/fv0", "/fv0/req", True, "/s/req"),
        ("/s", "/fv0", "/fv0req", False, "/s/fv0req"),
        ("/s/", "/fv0", "/fv0/req", False, "/s/fv0/req"),
        ("/", "/fv0", "/fv0", True, "/"),
        ("/", "/fv0", "/fv0/x", True, "/x"),
        ("/", "~/a/[^/]+$", "/a/b", True, "/"),
        ("/", "~/a/[^/]+$", "/a/b", False, "/a/b"),
    ],
)
def test_upstream_paths_follow_kongs_v0_path_handling(service_path, route_path, request_path, strip, upstream):
    route = Route("r", "s", "s", service_path, route_path, strip)
    assert route.upstream_path(request_path) == upstream


def _block(conf: str, opening: str) -> str:
    start = conf.index(opening + " {")
    return conf[start : conf.index("\n    }", start)]


def test_protected_routes_delegate_to_auth_and_public_ones_do_not():
    conf = render()
    device = _block(conf, "location /device")
    assert "auth_request /_ondas_pdp_http___auth_5000_pdp_gateway;" in device
    assert "proxy_set_header X-Ondas-Tenant $ondas_tenant;" in device
    login = _block(conf, 'location ~ "^/auth/?$"')
    assert "auth_request" not in login
    assert 'proxy_set_header X-Ondas-Tenant "";' in login, "a client cannot name the caller on public routes"
    device_data = _block(conf, "location /http-agent/v1/incoming-messages")
    assert "auth_request" not in device_data, "devices authenticate at the HTTP agent, not with a user token"
    assert 'proxy_set_header X-Ondas-Tenant "";' in device_data
    assert "proxy_pass http://up_http_agent;" in device_data
    pdp = _block(conf, "location = /_ondas_pdp_http___auth_5000_pdp_gateway")
    assert "internal;" in pdp
    assert "proxy_pass http://up_auth/pdp/gateway;" in pdp
    assert "proxy_set_header X-Original-URI $request_uri;" in pdp


def test_websocket_upgrades_pass_through_and_other_requests_keep_alive():
    conf = render()
    assert 'map $http_upgrade $ondas_connection { default upgrade; "" ""; }' in conf
    for location in ("location /kafka-ws/v1", "location /socket.io/", "location /device"):
        block = _block(conf, location)
        assert "proxy_set_header Upgrade $http_upgrade;" in block, location
        assert "proxy_set_header Connection $ondas_connection;" in block, location


def test_regex_locations_come_before_prefix_ones():
    conf = render()
    assert conf.index('location ~ "^/device/[^/]+/latest$"') < conf.index("location /device {")


def test_rewrites_strip_as_kong_does():
    conf = render()
    assert 'rewrite "(?:^/history)/?(?<ondas_rest>.*)$" /$ondas_rest break;' in conf
    assert 'rewrite "(?:^/auth/user)(?<ondas_rest>.*)$" /user$ondas_rest break;' in conf
    assert "rewrite" not in _block(conf, "location /device")


def test_login_rate_limit_renders_as_limit_req_with_a_json_429():
    conf = render()
    assert "limit_req_zone $binary_remote_addr zone=ondas_rl_auth_login:1m rate=5r/m;" in conf
    login = _block(conf, 'location ~ "^/auth/?$"')
    assert "limit_req zone=ondas_rl_auth_login burst=4 nodelay;" in login
    assert "limit_req_status 429;" in login
    limited = _block(conf, "location @ondas_limited_auth_login")
    assert 'return 429 \'{"error": "rate_limited", "message": "API rate limit exceeded"}\';' in limited
    assert "Retry-After 12" in limited


def test_the_rate_limit_can_be_overridden():
    conf = render(rate_limit=1000)
    assert "rate=1000r/m;" in conf and "burst=999 nodelay" in conf
    with pytest.raises(KongConfigError):
        render(rate_limit=0)


def test_a_limit_of_one_has_no_burst(tmp_path):
    conf = render(
        kong(
            tmp_path,
            "services: [{name: auth, url: 'http://auth:1', routes: [{name: r, paths: [/a], plugins: "
            "[{name: rate-limiting, config: {second: 1, limit_by: ip, error_code: 503}}]}]}]\n",
        )
    )
    assert "limit_req zone=ondas_rl_r nodelay;" in conf
    assert "rate=1r/s;" in conf
    assert "return 503 " in conf


def test_service_paths_and_pdp_urls_name_their_hosts(tmp_path):
    conf = render(
        kong(
            tmp_path,
            """services:
  - name: history
    url: http://history:8000/api
    routes:
      - name: latest
        paths: ["~/device/[^/]+/latest$"]
        strip_path: false
        plugins: [{name: ondas-pdp, config: {pdp_url: "http://device-manager:9/decide"}}]
""",
        )
    )
    assert 'location ~ "^/device/[^/]+/latest$" {' in conf
    assert 'rewrite "^(.*)$" /api$1 break;' in conf
    assert "proxy_pass http://up_device_manager/decide;" in conf
    assert "proxy_set_header Host history:8000;" in conf


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is installed by make install")
def test_nginx_accepts_the_rendered_configuration(tmp_path):
    (tmp_path / "tmp").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render_nginx(
            kong_file=KONG,
            listen="127.0.0.1:1",
            upstreams=UPSTREAMS,
            prefix=tmp_path,
            error_log=tmp_path / "e.log",
            access_log=tmp_path / "a.log",
        )
    )
    out = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr


ROUTE = "services: [{name: auth, url: 'http://auth:1', routes: [{name: r, paths: [/a]%s}]}]\n"


@pytest.mark.parametrize(
    "body",
    [
        "",  # replaced by an old format below
        "services: [{name: a, url: 'http://a', routes: [{name: r, paths: [/a], methods: [GET]}]}]\n",
        "services: [{name: auth, url: 'http://auth', routes: [{name: r, paths: [/a]}, {name: s, paths: [/a]}]}]\n",
        "services: [{name: auth, url: 'http://auth', routes: [{name: r, paths: [/a]}, {name: r, paths: [/b]}]}]\n",
        "services: [{name: nowhere, url: 'http://nowhere', routes: [{name: r, paths: [/a]}]}]\n",
        "services: [{name: auth, url: 'https://auth', routes: [{name: r, paths: [/a]}]}]\n",
        "services: [{name: auth, url: 'http://auth', routes: [{name: r, paths: [a]}]}]\n",
        "services: [{name: auth, url: 'http://auth', routes: [{name: r, paths: ['~/(a']}]}]\n",
        "consumers: [{username: x}]\nservices: []\n",
        "plugins: [{name: ondas-pdp}]\nservices: []\n",
        ROUTE % ", plugins: [{name: jwt}]",
        ROUTE % ", plugins: [{name: ondas-pdp, config: {timeout: 5}}]",
        ROUTE % ", plugins: [{name: ondas-pdp, config: {pdp_url: 'https://auth/pdp'}}]",
        ROUTE % ", plugins: [{name: ondas-pdp, route: x}]",
        ROUTE % ", plugins: [{name: rate-limiting, config: {hour: 5, limit_by: ip}}]",
        ROUTE % ", plugins: [{name: rate-limiting, config: {second: 1, minute: 5, limit_by: ip}}]",
        ROUTE % ", plugins: [{name: rate-limiting, config: {minute: 5}}]",
        ROUTE % ", plugins: [{name: rate-limiting, config: {minute: 5, limit_by: ip, policy: redis}}]",
        ROUTE % ", plugins: [{name: rate-limiting, config: {minute: 0, limit_by: ip}}]",
    ],
    ids=[
        "old-format",
        "unsupported-route-key",
        "duplicate-path",
        "duplicate-route-name",
        "unknown-host",
        "https-service",
        "relative-path",
        "bad-regex",
        "consumers",
        "global-plugins",
        "unknown-plugin",
        "pdp-unknown-config",
        "pdp-https",
        "plugin-unknown-key",
        "rate-hour",
        "rate-two-windows",
        "rate-by-consumer",
        "rate-redis",
        "rate-zero",
    ],
)
def test_what_the_local_gateway_cannot_honour_is_refused(tmp_path, body):
    path = tmp_path / "kong.yml"
    path.write_text(body if body else '_format_version: "1.1"\nservices: []\n')
    if body:
        path = kong(tmp_path, body)
    with pytest.raises(KongConfigError):
        render(path)
