"""The nginx configuration rendered from a kong.yml, run by real nginx in front of a small echo service: the
service receives the paths Kong's v0 path handling gives, regex routes win over prefixes, unknown paths get the
gateway's 404, and client-sent caller headers never reach the service."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from ondasctl.gateway import CONTROL_MESSAGE, GATEWAY_ERRORS, render_nginx
from ondasctl.ports import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is installed by make install"),
]

KONG = """_format_version: "3.0"
services:
  - name: plain
    url: http://echo:1
    routes:
      - {name: keep, paths: [/keep], strip_path: false}
      - {name: strip-root, paths: [/root], strip_path: true}
      - {name: latest, paths: ["~/keep/[^/]+/latest$"], strip_path: false}
      - {name: exact, paths: ["~/exact/?$"], strip_path: true}
  - name: sub
    url: http://echo:1/s
    routes:
      - {name: strip-sub, paths: [/fv0], strip_path: true}
      - {name: keep-sub, paths: [/kv0], strip_path: false}
  - name: sub-slash
    url: http://echo:1/s/
    routes:
      - {name: strip-sub-slash, paths: [/fs], strip_path: true}
  - name: limited
    url: http://echo:1/limited
    routes:
      - name: limited
        paths: [/limited]
        plugins: [{name: rate-limiting, config: {minute: 2, limit_by: ip, policy: local}}]
  - name: down
    url: http://down:1
    routes:
      - {name: down, paths: [/down], strip_path: false}
"""


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[str]:
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    d = tmp_path_factory.mktemp("nginx")
    (d / "tmp").mkdir()
    (d / "kong.yml").write_text(KONG)
    port = free_port()
    (d / "nginx.conf").write_text(
        render_nginx(
            kong_file=d / "kong.yml",
            listen=f"127.0.0.1:{port}",
            upstreams={"echo": f"127.0.0.1:{echo.server_address[1]}", "down": f"127.0.0.1:{free_port()}"},
            prefix=d,
            error_log=d / "error.log",
            access_log=d / "access.log",
            run_as_root=True,
        )
    )
    proc = subprocess.Popen(
        ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{url}/gateway/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (d / "error.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
        echo.shutdown()
        echo.server_close()


@pytest.mark.parametrize(
    ("request_path", "upstream"),
    [
        ("/keep", "/keep"),
        ("/keep/a?x=1&y=%2F", "/keep/a?x=1&y=%2F"),
        ("/keepx", "/keepx"),
        ("/root", "/"),
        ("/root/a/b?q=1", "/a/b?q=1"),
        ("/rootx", "/x"),
        ("/fv0", "/s"),
        ("/fv0req", "/sreq"),
        ("/fv0/req", "/s/req"),
        ("/kv0/req", "/s/kv0/req"),
        ("/fs", "/s/"),
        ("/fsreq", "/s/req"),
        ("/fs/req", "/s/req"),
        ("/exact", "/"),
        ("/exact/", "/"),
        ("/keep/d1/latest", "/keep/d1/latest"),
    ],
)
def test_the_service_receives_the_path_kong_would_send(gateway, request_path, upstream):
    r = requests.get(gateway + request_path, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == upstream


@pytest.mark.parametrize("path", ["/", "/exact/more", "/nothing", "/_ondas_pdp_x", "/limitedx/../nothing"])
def test_paths_without_a_route_get_the_gateways_404(gateway, path):
    r = requests.get(gateway + path, timeout=10)
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_client_sent_caller_headers_never_reach_the_service(gateway):
    r = requests.get(f"{gateway}/keep", headers={"X-Ondas-Tenant": "evil", "X-Ondas-User": "root"}, timeout=10)
    assert "x-ondas-tenant" not in r.json()["headers"]
    assert "x-ondas-user" not in r.json()["headers"]


def test_the_request_after_the_limit_gets_a_json_429(gateway):
    statuses = [requests.post(f"{gateway}/limited", timeout=10).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    r = requests.get(f"{gateway}/limited", timeout=10)
    assert r.status_code == 429
    assert r.json() == {"error": "rate_limited", "message": "API rate limit exceeded"}
    assert r.headers["Retry-After"] == "30"
    assert requests.get(f"{gateway}/keep", timeout=10).status_code == 200


def raw_request(gateway: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is (no client library normalises it) and read the whole answer."""
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def assert_gateway_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict[str, str]:
    assert status == expected, body
    assert headers["content-type"].startswith("application/json"), headers
    doc = json.loads(body)
    assert set(doc) == {"error", "message"}, doc
    assert doc["error"] == GATEWAY_ERRORS[expected][0]
    return doc  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "target",
    [
        "/keep/a%0ab",
        "/keep/a%0Db",
        "/keep/a%00",
        "/keep/a%1f",
        "/keep/a%7F",
        "/keep?x=%0a",
        "/keep?x=1&y=%0d%0aSet-Cookie:%20a=b",
        "/nothing%0a",
        "/limited%0a",
    ],
)
def test_control_characters_in_the_uri_get_a_json_400(gateway, target):
    status, headers, body = raw_request(
        gateway, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    doc = assert_gateway_error(status, headers, body, 400)
    # nginx's own URI parser refuses %00 before the gateway's check runs: the same 400, its generic message.
    assert doc["message"] == (GATEWAY_ERRORS[400][1] if "%00" in target else CONTROL_MESSAGE)
    assert "set-cookie" not in headers


@pytest.mark.parametrize(
    ("header", "value"),
    [("X-Request-Id", b"a\x01b"), ("Authorization", b"Bearer a\x1bb"), ("User-Agent", b"x\x7f"), ("Accept", b"\x0b")],
)
def test_control_characters_in_header_values_get_a_json_400(gateway, header, value):
    request = b"GET /keep HTTP/1.1\r\nHost: x\r\n" + header.encode() + b": " + value + b"\r\nConnection: close\r\n\r\n"
    doc = assert_gateway_error(*raw_request(gateway, request), 400)
    assert doc["message"] == CONTROL_MESSAGE


@pytest.mark.parametrize("target", ["/keep/%250a", "/keep/a%20b", "/keep?x=%41"])
def test_escaped_percent_and_printable_escapes_pass(gateway, target):
    status, _, body = raw_request(gateway, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status == 200, body


def test_a_tab_in_a_header_value_passes(gateway):
    r = requests.get(f"{gateway}/keep", headers={"User-Agent": "a\tb"}, timeout=10)
    assert r.status_code == 200


def test_a_request_nginx_cannot_parse_gets_a_json_400(gateway):
    assert_gateway_error(*raw_request(gateway, b"GARBAGE\r\n\r\n"), 400)
    assert_gateway_error(*raw_request(gateway, b"GET /keep HTTP/1.1\r\nHost: x\r\nBad\x00Header: 1\r\n\r\n"), 400)


def test_a_body_over_the_limit_gets_a_json_413(gateway):
    r = requests.post(f"{gateway}/keep", data=b"x" * (3 << 20), timeout=30)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"
    assert set(r.json()) == {"error", "message"}


def test_a_uri_too_long_gets_a_json_414(gateway):
    r = requests.get(f"{gateway}/keep/{'x' * 20000}", timeout=10)
    assert r.status_code == 414
    assert r.json()["error"] == "uri_too_long"


def test_a_service_that_is_down_gets_a_json_502(gateway):
    r = requests.get(f"{gateway}/down", timeout=10)
    assert r.status_code == 502
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"error": "bad_gateway", "message": GATEWAY_ERRORS[502][1]}


def test_the_gateways_404_is_in_the_error_shape(gateway):
    r = requests.get(f"{gateway}/nothing", timeout=10)
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"error": "not_found", "message": GATEWAY_ERRORS[404][1]}


def test_a_rate_limited_route_keeps_the_other_json_errors(gateway):
    # /limited has an error_page of its own (429), so it repeats the server's: a 413 there is JSON too.
    r = requests.post(f"{gateway}/limited", data=b"x" * (3 << 20), timeout=30)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"
