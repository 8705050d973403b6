"""Render gateway/kong.yml (Kong 3 declarative format) into an nginx configuration for the local gateway.

Supported subset, checked here; anything else is refused with a clear error, so the local gateway never silently
differs from Kong:

- top level: ``_format_version`` (3.x) and ``services``;
- services: ``name``, ``url``, ``routes``, ``plugins``; the URL's host names the local upstream;
- routes: ``name``, ``paths`` (prefixes, or regexes starting with ``~``, anchored at the start and matched before
  every prefix, as Kong does), ``strip_path`` (Kong's default path handling, v0), ``preserve_host``, ``plugins``;
- plugin ``ondas-pdp`` (``pdp_url``): each request is first sent to the PDP through nginx
  ``auth_request`` with ``Authorization``, ``X-Original-Method`` and ``X-Original-URI`` (the raw URI); 401 and
  403 are passed on with the PDP's reason, and the permitted caller reaches the service in ``X-Ondas-Tenant`` and
  ``X-Ondas-User`` (values a client sends in those headers are dropped on every route);
- plugin ``rate-limiting`` with one window (``second`` or ``minute``), ``limit_by: ip`` and ``policy: local``
  (``error_code`` and ``error_message`` too): nginx ``limit_req`` keyed by the client address, with a burst of
  the whole limit, so the request after the limit, sent within the window, gets the error code (429) and a
  JSON body. Kong counts in fixed windows and nginx drains a bucket steadily (one request every window/limit):
  both let the limit through at once and refuse the next one.

Every route passes websocket upgrades through (``Upgrade`` and ``Connection: upgrade`` to the service), as Kong
does; other requests reuse upstream connections.

Every route (and the catch-all 404) first refuses control characters (0x00-0x1f, 0x7f) percent-escaped in the
URI or in the header values the gateway and the services read: 400 before the PDP is asked. Every error nginx
makes itself (GATEWAY_ERRORS: 400, 404, 405, 408, 413, 414, 429, 431, 500, 502, 503, 504) is answered as JSON
in the services' error shape (``{"error", "message"}``, ondas/errors.py), through ``error_page`` to internal
locations; a service's own error answers pass unchanged.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

PDP_PLUGIN = "ondas-pdp"
RATE_LIMIT_PLUGIN = "rate-limiting"
DEFAULT_PDP_URL = "http://auth:5000/pdp/gateway"

_TOP_KEYS = {"_format_version", "services"}
_SERVICE_KEYS = {"name", "url", "routes", "plugins"}
_ROUTE_KEYS = {"name", "paths", "strip_path", "plugins", "preserve_host"}
_PLUGIN_KEYS = {"name", "config", "enabled"}
_PDP_KEYS = {"pdp_url"}
_RATE_KEYS = {"second", "minute", "limit_by", "policy", "error_code", "error_message"}
_WINDOWS = {"second": ("s", 1), "minute": ("m", 60)}
# Headers that only the gateway sets (from the PDP's answer); a client's own values never reach a service.
_CALLER_HEADERS = {"X-Ondas-Tenant": "ondas_tenant", "X-Ondas-User": "ondas_user"}


class KongConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window: str  # "second" | "minute"
    error_code: int = 429
    error_message: str = "API rate limit exceeded"

    @property
    def seconds(self) -> int:
        return _WINDOWS[self.window][1]


@dataclass(frozen=True)
class Route:
    name: str
    service: str
    host: str  # the service URL's host: names the upstream
    service_path: str
    path: str
    strip_path: bool
    preserve_host: bool = False
    pdp_url: str | None = None  # set on protected routes
    rate_limit: RateLimit | None = None
    host_header: str = ""

    @property
    def protected(self) -> bool:
        return self.pdp_url is not None

    @property
    def is_regex(self) -> bool:
        return self.path.startswith("~")

    @property
    def regex(self) -> str:
        """The anchored regex of a regex path."""
        return "^" + self.path[1:].lstrip("^")

    def upstream_path(self, request_path: str) -> str:
        """The path the service receives for ``request_path`` (which this route matches): Kong's v0 handling."""
        if self.strip_path:
            if self.is_regex:
                m = re.match(self.regex, request_path)
                rest = request_path[m.end() :] if m else request_path
            else:
                rest = request_path[len(self.path) :]
            if self.service_path.endswith("/"):
                return self.service_path + rest.removeprefix("/")
            return self.service_path + rest if rest or self.service_path else "/"
        if self.service_path in ("", "/"):
            return request_path
        return self.service_path.rstrip("/") + request_path


def _plugins(owner: str, plugins: Any) -> tuple[str | None, RateLimit | None]:
    """(pdp_url, rate limit) from a plugin list; unsupported plugins or settings are refused."""
    pdp_url: str | None = None
    rate: RateLimit | None = None
    if plugins is None:
        return None, None
    if not isinstance(plugins, list):
        raise KongConfigError(f"{owner}: plugins must be a list")
    for p in plugins:
        if not isinstance(p, dict) or set(p) - _PLUGIN_KEYS:
            raise KongConfigError(f"{owner}: plugin {p!r}: supported keys are {sorted(_PLUGIN_KEYS)}")
        if p.get("enabled") is False:
            continue
        name, config = p.get("name"), p.get("config") or {}
        if name == PDP_PLUGIN:
            extra = set(config) - _PDP_KEYS
            if extra:
                raise KongConfigError(f"{owner}: {PDP_PLUGIN}: unsupported config {sorted(extra)}")
            pdp_url = str(config.get("pdp_url") or DEFAULT_PDP_URL)
            if urlparse(pdp_url).scheme != "http":
                raise KongConfigError(f"{owner}: {PDP_PLUGIN}: pdp_url must be an http:// URL")
        elif name == RATE_LIMIT_PLUGIN:
            rate = _rate_limit(owner, config)
        else:
            raise KongConfigError(f"{owner}: plugin {name!r} is not supported by the local gateway")
    return pdp_url, rate


def _rate_limit(owner: str, config: dict[str, Any]) -> RateLimit:
    where = f"{owner}: {RATE_LIMIT_PLUGIN}"
    extra = set(config) - _RATE_KEYS
    if extra:
        raise KongConfigError(f"{where}: unsupported config {sorted(extra)}")
    windows = [w for w in _WINDOWS if config.get(w) is not None]
    if len(windows) != 1:
        raise KongConfigError(f"{where}: set exactly one of {sorted(_WINDOWS)}")
    limit = config[windows[0]]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise KongConfigError(f"{where}: {windows[0]} must be a positive integer")
    if config.get("limit_by", "consumer") != "ip":
        raise KongConfigError(f"{where}: only limit_by: ip is supported")
    if config.get("policy", "local") != "local":
        raise KongConfigError(f"{where}: only policy: local is supported")
    code = config.get("error_code", 429)
    if not isinstance(code, int) or not 400 <= code <= 599:
        raise KongConfigError(f"{where}: error_code must be an HTTP error status")
    message = str(config.get("error_message", RateLimit.error_message))
    return RateLimit(limit=limit, window=windows[0], error_code=code, error_message=message)


def load_routes(kong_file: Path) -> list[Route]:
    doc = yaml.safe_load(kong_file.read_text())
    if not isinstance(doc, dict) or not str(doc.get("_format_version", "")).startswith("3"):
        raise KongConfigError(f"{kong_file}: expected a Kong 3 declarative file (_format_version: '3.0')")
    extra = set(doc) - _TOP_KEYS
    if extra:
        raise KongConfigError(f"{kong_file}: unsupported top-level keys {sorted(extra)}")
    routes: list[Route] = []
    seen: set[str] = set()
    names: set[str] = set()
    for svc in doc.get("services") or []:
        extra = set(svc) - _SERVICE_KEYS
        if extra:
            raise KongConfigError(f"service {svc.get('name')}: unsupported keys {sorted(extra)}")
        url = urlparse(str(svc.get("url", "")))
        if url.scheme != "http" or not url.hostname or url.query or url.params:
            raise KongConfigError(f"service {svc.get('name')}: url must be http://host[:port][/path]")
        svc_pdp, svc_rate = _plugins(f"service {svc['name']}", svc.get("plugins"))
        for r in svc.get("routes") or []:
            extra = set(r) - _ROUTE_KEYS
            if extra:
                raise KongConfigError(f"route {r.get('name')}: unsupported keys {sorted(extra)}")
            if r.get("name") in names:
                raise KongConfigError(f"route {r.get('name')} is defined twice")
            names.add(r.get("name"))
            pdp, rate = _plugins(f"route {r.get('name')}", r.get("plugins"))
            for path in r.get("paths") or []:
                if not isinstance(path, str) or not (path.startswith("/") or path.startswith("~/")):
                    raise KongConfigError(f"route {r.get('name')}: path {path!r} must start with / or ~/")
                if path in seen:
                    raise KongConfigError(f"path {path} is routed twice")
                seen.add(path)
                if path.startswith("~"):
                    try:
                        re.compile(path[1:])
                    except re.error as exc:
                        raise KongConfigError(f"route {r.get('name')}: bad regex {path!r}: {exc}") from exc
                routes.append(
                    Route(
                        name=r["name"],
                        service=svc["name"],
                        host=url.hostname,
                        service_path=url.path or "/",
                        path=path,
                        strip_path=bool(r.get("strip_path", True)),
                        preserve_host=bool(r.get("preserve_host", False)),
                        pdp_url=pdp or svc_pdp,
                        rate_limit=rate or svc_rate,
                        host_header=url.netloc,
                    )
                )
    return routes


def _ident(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _upstream_name(host: str) -> str:
    return "up_" + _ident(host)


def _quote(value: str) -> str:
    """An nginx string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _json_literal(value: dict[str, str]) -> str:
    return _quote(json.dumps(value)).replace("$", "${dollar}")


def _pdp_location(pdp_url: str) -> str:
    return "/_ondas_pdp_" + _ident(pdp_url)


def _location(route: Route) -> str:
    up = _upstream_name(route.host)
    lines: list[str] = []
    if route.is_regex:
        lines.append(f'    location ~ "{route.regex}" {{')
    else:
        lines.append(f"    location {route.path} {{")
    host = "$http_host" if route.preserve_host else route.host_header
    lines += [
        _REFUSE_CONTROL,
        f"        proxy_set_header Host {host};",
        # Websocket upgrades pass through (Kong does the same); other requests keep the upstream connection alive.
        "        proxy_set_header Upgrade $http_upgrade;",
        "        proxy_set_header Connection $ondas_connection;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_set_header X-Request-Id $ondas_request_id;",
    ]
    if route.protected:
        assert route.pdp_url is not None
        lines += [
            f"        auth_request {_pdp_location(route.pdp_url)};",
            "        auth_request_set $ondas_reason $upstream_http_x_ondas_reason;",
            "        auth_request_set $ondas_tenant $upstream_http_x_ondas_tenant;",
            "        auth_request_set $ondas_user $upstream_http_x_ondas_user;",
            "        error_page 401 = @ondas_401;",
            "        error_page 403 = @ondas_403;",
        ]
        lines += [f"        proxy_set_header {h} ${var};" for h, var in _CALLER_HEADERS.items()]
    else:
        lines += [f'        proxy_set_header {h} "";' for h in _CALLER_HEADERS]
    if route.rate_limit:
        rl = route.rate_limit
        burst = f" burst={rl.limit - 1}" if rl.limit > 1 else ""
        lines += [
            f"        limit_req zone={_zone(route)}{burst} nodelay;",
            f"        limit_req_status {rl.error_code};",
            f"        error_page {rl.error_code} = @ondas_limited_{_ident(route.name)};",
        ]
    lines.append(_rewrite(route))
    own = {401, 403} if route.protected else set()
    if route.rate_limit:
        own.add(route.rate_limit.error_code)
    if own:  # a location with an error_page of its own inherits none of the server's
        lines += [f"        error_page {code} {_error_uri(code)};" for code in GATEWAY_ERRORS if code not in own]
    lines += [f"        proxy_pass http://{up};", "    }"]
    return "\n".join(line for line in lines if line)


def _rewrite(route: Route) -> str:
    """nginx rewrite implementing Kong's v0 path handling (the query string is kept by nginx)."""
    svc = route.service_path or "/"
    if route.strip_path:
        match = route.regex if route.is_regex else "^" + re.escape(route.path)
        if svc.endswith("/"):
            return f'        rewrite "(?:{match})/?(?<ondas_rest>.*)$" {svc}$ondas_rest break;'
        return f'        rewrite "(?:{match})(?<ondas_rest>.*)$" {svc}$ondas_rest break;'
    if svc == "/":
        return ""
    return f'        rewrite "^(.*)$" {svc.rstrip("/")}$1 break;'


def _zone(route: Route) -> str:
    return "ondas_rl_" + _ident(route.name)


def _limited_location(route: Route) -> str:
    rl = route.rate_limit
    assert rl is not None
    retry = math.ceil(rl.seconds / rl.limit)
    body = _json_literal({"error": "rate_limited", "message": rl.error_message})
    return f"""    location @ondas_limited_{_ident(route.name)} {{
        default_type application/json;
        add_header Retry-After {retry} always;
        return {rl.error_code} {body};
    }}"""


# The answers the gateway makes itself (nginx: a request it cannot parse, no route, a body over the limit, an
# upstream that is down or slow...), as JSON in the services' error shape (ondas/errors.py: error, message).
GATEWAY_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid", "the gateway could not read the request"),
    404: ("not_found", "no route of the gateway matches this path"),
    405: ("method_not_allowed", "the method is not allowed for this path"),
    408: ("timeout", "the request was not received in time"),
    413: ("payload_too_large", "the request body is larger than the gateway accepts (2 MiB)"),
    414: ("uri_too_long", "the request URI is too long"),
    429: ("rate_limited", "API rate limit exceeded"),
    431: ("headers_too_large", "the request headers are too large"),
    500: ("internal", "the gateway failed; see its error log"),
    502: ("bad_gateway", "the service behind this route did not answer"),
    503: ("unavailable", "the service behind this route is unavailable"),
    504: ("gateway_timeout", "the service behind this route did not answer in time"),
}
CONTROL_MESSAGE = "control characters in the path, query string or a header"
# Percent-escapes of 0x00-0x1f and 0x7f in the raw URI (raw control characters never get past nginx's parser).
_CONTROL_URI_RE = "%(0[0-9a-fA-F]|1[0-9a-fA-F]|7[fF])"
# Header values checked for 0x00-0x08, 0x0a-0x1f and 0x7f (nginx itself refuses NUL, CR and LF in any header;
# a horizontal tab is allowed in a header value). nginx cannot list every header: these are the ones the gateway
# or a service reads.
_CHECKED_HEADERS = (
    "authorization",
    "x_request_id",
    "content_type",
    "accept",
    "user_agent",
    "host",
    "cookie",
    "origin",
    "referer",
    "x_forwarded_for",
)


def _error_uri(code: int) -> str:
    # A URI, not a named location: nginx cannot redirect a request it could not parse to a named one.
    return f"/_ondas_error_{code}"


# In every location (not the server: its rewrites run again for the error URIs): before the PDP and any service.
_REFUSE_CONTROL = "        if ($ondas_control) { return 400; }"


def _error_locations() -> str:
    blocks = []
    for code, (kind, message) in GATEWAY_ERRORS.items():
        if code == 400:
            body = _json_literal({"error": kind, "message": "MESSAGE"}).replace("MESSAGE", "$ondas_400_message")
        else:
            body = _json_literal({"error": kind, "message": message})
        blocks.append(
            f"""    location = {_error_uri(code)} {{
        internal;
        default_type application/json;
        return {code} {body};
    }}"""
        )
    return "\n\n".join(blocks)


def _control_maps() -> str:
    headers = "|".join(f"$http_{h}" for h in _CHECKED_HEADERS)
    ok, bad = _quote(GATEWAY_ERRORS[400][1]), _quote(CONTROL_MESSAGE)
    raw = "[\\x00-\\x1f\\x7f]"
    return "\n".join(
        [
            f'    map $request_uri $ondas_control_uri {{ default ""; "~{_CONTROL_URI_RE}" 1; "~{raw}" 1; }}',
            f'    map "{headers}" $ondas_control_header {{ default ""; "~[\\x00-\\x08\\x0a-\\x1f\\x7f]" 1; }}',
            '    map "$ondas_control_uri$ondas_control_header" $ondas_control { default 1; "" ""; }',
            f'    map $ondas_control $ondas_400_message {{ default {bad}; "" {ok}; }}',
        ]
    )


def render_nginx(
    *,
    kong_file: Path,
    listen: str,
    upstreams: dict[str, str],
    prefix: Path,
    error_log: Path,
    access_log: Path,
    run_as_root: bool = False,
    rate_limit: int | None = None,
) -> str:
    """nginx.conf for ``kong_file``. ``upstreams`` maps each service URL's host name (and the PDP's) to a local
    ``host:port``. ``rate_limit`` replaces the limit of every rate-limiting plugin (test suites that log in
    often set it)."""
    routes = load_routes(kong_file)
    if rate_limit is not None:
        if rate_limit < 1:
            raise KongConfigError("the rate limit override must be a positive integer")
        routes = [replace(r, rate_limit=replace(r.rate_limit, limit=rate_limit)) if r.rate_limit else r for r in routes]
    pdp_urls = sorted({r.pdp_url for r in routes if r.pdp_url})
    needed = {r.host for r in routes} | {urlparse(u).hostname or "" for u in pdp_urls}
    missing = sorted(needed - set(upstreams))
    if missing:
        raise KongConfigError(f"no local address for the hosts {missing} named in {kong_file}")
    upstream_blocks = "\n".join(
        f"    upstream {_upstream_name(name)} {{ server {upstreams[name]}; keepalive 32; }}" for name in sorted(needed)
    )
    zones = "\n".join(
        f"    limit_req_zone $binary_remote_addr zone={_zone(r)}:1m "
        f"rate={r.rate_limit.limit}r/{_WINDOWS[r.rate_limit.window][0]};"
        for r in routes
        if r.rate_limit
    )
    pdp_blocks = "\n\n".join(_pdp_block(u) for u in pdp_urls)
    limited = "\n\n".join(_limited_location(r) for r in routes if r.rate_limit)
    # Regex locations first (nginx tries them in order, after finding the longest prefix; a matching regex wins).
    ordered = [r for r in routes if r.is_regex] + [r for r in routes if not r.is_regex]
    locations = "\n\n".join(_location(r) for r in ordered)
    tmp = prefix / "tmp"
    user = "user root;\n" if run_as_root else ""
    unauthenticated = _json_literal({"error": "unauthenticated", "message": "REASON"}).replace(
        "REASON", "$ondas_reason"
    )
    forbidden = _json_literal({"error": "forbidden", "message": "REASON"}).replace("REASON", "$ondas_reason")
    refusals = _REFUSALS.format(unauthenticated=unauthenticated, forbidden=forbidden) if pdp_urls else ""
    error_pages = "\n".join(f"    error_page {code} {_error_uri(code)};" for code in GATEWAY_ERRORS)
    return f"""# Generated by ondasctl from {kong_file.name}; do not edit.
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {error_log} warn;

events {{ worker_connections 4096; }}

http {{
    log_format ondas escape=json '{{"ts":"$time_iso8601","request_id":"$ondas_request_id",'
        '"method":"$request_method","uri":"$request_uri","status":$status,'
        '"duration_s":$request_time,"upstream":"$upstream_addr"}}';
    access_log {access_log} ondas;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 2m;
    server_tokens off;

    map $http_x_request_id $ondas_request_id {{ default $http_x_request_id; "" $request_id; }}
    map $http_upgrade $ondas_connection {{ default upgrade; "" ""; }}
    geo $dollar {{ default "$"; }}
{_control_maps()}
{zones}

{upstream_blocks}

    server {{
    listen {listen};
    proxy_http_version 1.1;
{error_pages}

{_error_locations()}

    location = /gateway/health {{
        default_type application/json;
        return 200 '{{"status":"ok"}}';
    }}

{pdp_blocks}

{refusals}

{limited}

{locations}

    location / {{
{_REFUSE_CONTROL}
        return 404;
    }}
    }}
}}
"""


_REFUSALS = """    location @ondas_401 {{
        default_type application/json;
        add_header WWW-Authenticate 'Bearer realm="ondas"' always;
        add_header X-Ondas-Reason $ondas_reason always;
        return 401 {unauthenticated};
    }}

    location @ondas_403 {{
        default_type application/json;
        add_header X-Ondas-Reason $ondas_reason always;
        return 403 {forbidden};
    }}"""


def _pdp_block(pdp_url: str) -> str:
    u = urlparse(pdp_url)
    path = u.path or "/"
    return f"""    location = {_pdp_location(pdp_url)} {{
        internal;
        proxy_pass http://{_upstream_name(u.hostname or "")}{path};
        proxy_pass_request_body off;
        proxy_set_header Host {u.netloc};
        proxy_set_header Connection "";
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header Authorization $http_authorization;
        proxy_set_header X-Request-Id $ondas_request_id;
    }}"""
