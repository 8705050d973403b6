from pathlib import Path

import pytest

from ondasctl.gateway import KongConfigError, load_routes, render_nginx

pytestmark = pytest.mark.unit

KONG = Path(__file__).resolve().parents[3] / "gateway" / "kong.yml"
UPSTREAMS = {"auth": "127.0.0.1:1", "device-manager": "127.0.0.1:2", "history": "127.0.0.1:3"}


def render(kong_file: Path = KONG) -> str:
    return render_nginx(
        kong_file=kong_file,
        listen="127.0.0.1:8000",
        upstreams=UPSTREAMS,
        prefix=Path("/p"),
        error_log=Path("/p/e"),
        access_log=Path("/p/a"),
    )


def test_route_table_of_the_seed():
    routes = {r.path: r for r in load_routes(KONG)}
    assert not routes["/auth"].protected and routes["/auth"].strip_path
    for protected in ("/device", "/template", "/history"):
        assert routes[protected].protected, protected
    assert not routes["/device"].strip_path
    assert routes["/history"].strip_path


def _block(conf: str, path: str) -> str:
    start = conf.index(f"location {path} {{")
    return conf[start : conf.index("}", start)]


def test_protected_routes_delegate_to_auth_and_public_ones_do_not():
    conf = render()
    assert "auth_request /_ondas_pdp;" in _block(conf, "/device")
    assert "auth_request" not in _block(conf, "/auth")
    assert "proxy_pass http://up_auth/pdp/gateway;" in conf


def test_strip_path_rewrites_to_the_service_root():
    conf = render()
    assert "rewrite ^/history/?(.*)$ /$1 break;" in _block(conf, "/history")
    assert "rewrite" not in _block(conf, "/device")


def test_regex_routes_and_service_paths(tmp_path):
    kong = tmp_path / "kong.yml"
    kong.write_text(
        """
_format_version: "3.0"
services:
  - name: history
    url: http://history:8000/api
    routes:
      - name: latest
        paths: ["~/device/[^/]+/latest$"]
        strip_path: false
        plugins: [{name: ondas-pdp}]
"""
    )
    conf = render(kong)
    assert "location ~ ^/device/[^/]+/latest$ {" in conf
    assert "rewrite ^(.*)$ /api$1 break;" in conf


@pytest.mark.parametrize(
    "body",
    [
        '_format_version: "1.1"\nservices: []\n',
        '_format_version: "3.0"\nservices: [{name: a, url: "http://a", '
        "routes: [{name: r, paths: [/a], methods: [GET]}]}]\n",
        '_format_version: "3.0"\nservices: [{name: auth, url: "http://a", routes: [{name: r, paths: [/a]}, '
        "{name: s, paths: [/a]}]}]\n",
        '_format_version: "3.0"\nservices: [{name: nowhere, url: "http://a", routes: [{name: r, paths: [/a]}]}]\n',
    ],
    ids=["old-format", "unsupported-key", "duplicate-path", "unknown-service"],
)
def test_what_the_local_gateway_cannot_honour_is_refused(tmp_path, body):
    kong = tmp_path / "kong.yml"
    kong.write_text(body)
    with pytest.raises(KongConfigError):
        render(kong)
