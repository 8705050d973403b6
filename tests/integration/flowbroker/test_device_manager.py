"""With the real device manager (its internal API over HTTP): a flow naming another tenant's device is refused on
save, and the worker learns the templates and static attributes of a device it has seen no event of."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from device_manager.app import build_api as build_dm
from device_manager.app import close_api as close_dm
from flowbroker.app import build_api, close_api
from flowbroker.settings import Settings
from ondas.topics import device_data
from tests.integration.device_manager.helpers import make_settings as dm_settings
from tests.integration.flowbroker.conftest import Api, Reader
from tests.unit.flowbroker import flows

pytestmark = pytest.mark.integration


@pytest.fixture
def device_manager(pg_database: Callable[[str], str], kafka_bootstrap: str, tokens: Any) -> Iterator[str]:
    app = build_dm(dm_settings(pg_database("dm"), kafka_bootstrap, str(tokens.public_file)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    close_dm(app)


def make_device(dm: str, tokens: Any, tenant: str) -> tuple[str, str]:
    import requests

    headers = tokens.headers(tenant)
    template = {
        "label": "station",
        "attrs": [
            {"label": "rain", "type": "dynamic", "value_type": "float"},
            {"label": "model", "type": "static", "value_type": "string", "static_value": "WS-1"},
        ],
    }
    resp = requests.post(dm + "/template", json=template, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    tid = str(resp.json()["template"]["id"])
    resp = requests.post(dm + "/device", json={"templates": [tid], "label": "ws"}, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return tid, str(resp.json()["devices"][0]["id"])


@pytest.fixture
def checked(settings: Settings, device_manager: str) -> Settings:
    return replace(settings, device_manager_url=device_manager)


@pytest.fixture
def checked_client(checked: Settings) -> Iterator[FlaskClient]:
    app = build_api(checked)
    with app.test_client() as c:
        yield c
    close_api(app)


def test_devices_of_another_tenant_are_refused(
    checked_client: FlaskClient, device_manager: str, tokens: Any, unique: str
) -> None:
    _, mine = make_device(device_manager, tokens, unique)
    _, theirs = make_device(device_manager, tokens, unique + "b")
    api = Api(checked_client, tokens.headers(unique))
    api.create(flows.rename_flow(mine, mine))
    status, body = api.call("POST", "/flows/v1/flow", {"flow": flows.rename_flow(theirs, mine)})
    assert status == 400
    assert body["node"] == "A920a88fb88b6a8" and theirs in body["reason"]
    status, body = api.call("POST", "/flows/v1/flow", {"flow": flows.rename_flow(mine, theirs)})
    assert status == 400 and body["node"] == "A2a3e9053e945f"


def test_worker_learns_templates_and_static_attributes(
    checked_client: FlaskClient,
    checked: Settings,
    device_manager: str,
    tokens: Any,
    unique: str,
    start_worker: Callable[..., Any],
    send: Callable[[str, Any, str], None],
    reader: Callable[[str], Reader],
) -> None:
    tid, station = make_device(device_manager, tokens, unique)
    api = Api(checked_client, tokens.headers(unique))
    nodes = [
        flows.tab(),
        {
            "id": "tin",
            "type": "event template in",
            "z": flows.TAB,
            "name": "",
            "event_create": False,
            "event_update": False,
            "event_remove": False,
            "event_configure": False,
            "event_publish": True,
            "template_id": tid,
            "x": 100,
            "y": 100,
            "wires": [["out"]],
        },
        {
            **flows.device_out("out", []),
            "device_source": "self",
            "devices_source_configured": [""],
            "attrs": "payload.data.attrs",
        },
    ]
    api.create(nodes)
    start_worker(device_manager_url=device_manager)
    out = reader(device_data(unique))
    send(
        device_data(unique),
        {"metadata": {"deviceid": station, "tenant": unique, "timestamp": 5}, "attrs": {"rain": 2.5}},
        station,
    )
    records = out.until(1, lambda v: "model" in v.get("attrs", {}))
    assert records[0]["attrs"] == {"model": "WS-1", "rain": 2.5}
    assert records[0]["metadata"]["deviceid"] == station
