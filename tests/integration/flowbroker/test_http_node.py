"""The HTTP request node against real local HTTP servers: the §12.2.1 token request, the destination policy
(loopback refused unless allowed), the timeout and the response-size limit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from flowbroker.nodes.base import NodeError
from flowbroker.nodes.request import SafeHttpClient, http, parse_networks
from tests.integration.flowbroker.servers_http import LocalServer
from tests.unit.flowbroker.helpers import run_context

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    yield s
    s.close()


def allowed() -> SafeHttpClient:
    return SafeHttpClient(timeout=1.0, max_bytes=64 << 10, allowed=parse_networks("127.0.0.1/32"))


def test_token_request_as_in_the_tutorial(server: LocalServer) -> None:
    node = {"id": "h", "method": "POST", "url": server.url + "/token", "body": "req", "response": "res", "ret": "obj"}
    msg = {"req": json.dumps({"payload": {"username": "ana", "password": "secret"}, "headers": {"X-App": "1"}})}
    (out,) = http(node, msg, run_context(http=allowed()))
    assert out is not None
    assert out["res"]["statusCode"] == 200
    assert out["res"]["payload"] == {"token": "tok-ana-6"}
    method, path, headers, body = server.requests[0]
    assert (method, path, headers["X-App"], headers["Content-Type"]) == ("POST", "/token", "1", "application/json")
    assert json.loads(body) == {"username": "ana", "password": "secret"}
    (txt,) = http(
        {**node, "ret": "txt"}, {"req": {"payload": {"username": "b", "password": ""}}}, run_context(http=allowed())
    )
    assert txt is not None and txt["res"]["payload"] == '{"token": "tok-b-0"}'


def test_loopback_and_private_destinations_refused_by_default(server: LocalServer) -> None:
    strict = SafeHttpClient(timeout=1.0, max_bytes=1024, allowed=[])
    node = {"id": "h", "method": "GET", "url": server.url + "/x", "body": "req", "response": "res"}
    with pytest.raises(NodeError, match="not allowed"):
        http(node, {"req": {}}, run_context(http=strict))
    with pytest.raises(NodeError, match="not allowed"):
        strict.check_destination("http://10.1.2.3/")
    with pytest.raises(NodeError, match="not allowed"):
        strict.check_destination("http://169.254.169.254/latest/meta-data")
    assert server.requests == []
    # a redirect to a private address is checked again and refused
    with pytest.raises(NodeError, match="not allowed"):
        http({**node, "url": server.url + "/redirect"}, {"req": {}}, run_context(http=allowed()))


def test_timeout_and_size_limit(server: LocalServer) -> None:
    node = {"id": "h", "method": "POST", "url": server.url + "/hang", "body": "req", "response": "res"}
    with pytest.raises(NodeError, match="no response within"):
        http(node, {"req": {"payload": {}}}, run_context(http=allowed()))
    with pytest.raises(NodeError, match="larger than"):
        http({**node, "url": server.url + "/big"}, {"req": {"payload": {}}}, run_context(http=allowed()))


def test_bad_requests() -> None:
    node = {"id": "h", "method": "POST", "url": "", "body": "req", "response": "res"}
    with pytest.raises(NodeError, match="not JSON"):
        http(node, {"req": "{not json"}, run_context(http=allowed()))
    with pytest.raises(NodeError, match="no request object"):
        http(node, {}, run_context(http=allowed()))
    with pytest.raises(NodeError, match="no URL"):
        http(node, {"req": {}}, run_context(http=allowed()))
