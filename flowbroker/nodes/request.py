"""The HTTP request node, and the HTTP client it calls through: a timeout for the whole request, a response-size
limit and a destination policy (private, loopback, link-local and reserved addresses refused unless their network
is allowed by the ``FLOWBROKER_HTTP_ALLOWED_NETWORKS`` setting). Redirects are followed by hand, each hop checked
again."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import chevron
import requests

from flowbroker.nodes.base import Msg, NodeError, NodeJson, Result, RunContext, get_path, set_path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[Network]:
    """Comma-separated CIDRs (or addresses); raises ValueError for one that is not."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


class SafeHttpClient:
    MAX_REDIRECTS = 5

    def __init__(self, timeout: float, max_bytes: int, allowed: list[Network]) -> None:
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._allowed = allowed
        self._local = threading.local()  # one session per flow thread (a Session is not meant to be shared)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxy from the environment: the policy applies to the real target
            self._local.session = session
        return session

    def check_destination(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NodeError(f"invalid URL {url!r}: http or https with a host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, ValueError) as exc:
            raise NodeError(f"cannot resolve {parts.hostname!r}: {exc}") from exc
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if any(address in net for net in self._allowed):
                continue
            if not address.is_global or address.is_multicast:
                raise NodeError(f"destination {parts.hostname} ({address}) is not allowed (private or local address)")

    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes, str]:
        deadline = time.monotonic() + self._timeout
        for _ in range(self.MAX_REDIRECTS + 1):
            self.check_destination(url)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeError(f"no response within {self._timeout:g} s")
            try:
                resp = self._session().request(
                    method, url, headers=headers, data=body, timeout=remaining, stream=True, allow_redirects=False
                )
            except requests.Timeout as exc:
                raise NodeError(f"no response within {self._timeout:g} s") from exc
            except requests.RequestException as exc:
                raise NodeError(f"request failed: {exc}") from exc
            with resp:
                if resp.is_redirect and resp.headers.get("location"):
                    url = urljoin(url, resp.headers["location"])
                    if resp.status_code in (301, 302, 303) and method != "HEAD":
                        method, body = "GET", None
                    continue
                return resp.status_code, dict(resp.headers), self._read(resp, deadline), url
        raise NodeError("too many redirects")

    def _read(self, resp: requests.Response, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.iter_content(64 << 10):
                size += len(chunk)
                if size > self._max_bytes:
                    raise NodeError(f"response larger than {self._max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise NodeError(f"no complete response within {self._timeout:g} s")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise NodeError(f"reading the response failed: {exc}") from exc
        return b"".join(chunks)


def _request_of(node: NodeJson, msg: Msg) -> dict[str, Any]:
    raw = get_path(msg, str(node["body"]))
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise NodeError(f"the request at {node['body']!r} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise NodeError(f"no request object at {node['body']!r}")
    return raw


def http(node: NodeJson, msg: Msg, ctx: RunContext) -> Result:
    req = _request_of(node, msg)
    url = str(node.get("url") or "").strip()
    if "{{" in url:
        url = chevron.render(url, msg, warn=False)
    url = url or str(req.get("url") or msg.get("url") or "")
    if not url:
        raise NodeError("no URL set")
    if "://" not in url:
        url = "http://" + url
    method = str(node.get("method") or "GET").upper()
    if method == "USE":
        method = str(msg.get("method") or "GET").upper()
    headers = (
        {str(k): str(v) for k, v in (req.get("headers") or {}).items()} if isinstance(req.get("headers"), dict) else {}
    )
    body: bytes | None = None
    payload = req.get("payload")
    if payload is not None and method in ("POST", "PUT", "PATCH"):
        if isinstance(payload, str):
            body = payload.encode()
        elif isinstance(payload, int | float) and not isinstance(payload, bool):
            body = str(payload).encode()
        else:
            body = json.dumps(payload).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
    status, resp_headers, content, final_url = ctx.http.request(method, url, headers, body)
    ret = node.get("ret") or "txt"
    result: Any
    if ret == "bin":
        result = list(content)
    else:
        result = content.decode("utf-8", errors="replace")
        if ret == "obj":
            try:
                result = json.loads(result)
            except ValueError:
                pass  # dojot forwards the text when it is not JSON
    response = {"statusCode": status, "headers": resp_headers, "responseUrl": final_url, "payload": result}
    set_path(msg, str(node["response"]), response)
    return [msg]
