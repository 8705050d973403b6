"""multi actuate through the device manager's actuation path, against a stand-in of the internal route the
flowbroker calls (``PUT /internal/tenants/<t>/devices/<id>/actuate``, not yet in the device manager: see
flowbroker/README.md) that also answers the device look-up."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flowbroker.devices import DeviceManagerClient
from flowbroker.nodes.base import NodeError
from ondas.topics import device_data
from tests.integration.flowbroker.conftest import Api
from tests.unit.flowbroker import flows
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


class DeviceManagerStandIn:
    def __init__(self, devices: set[str]) -> None:
        self.actuations: list[tuple[str, dict[str, Any]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                device = self.path.rsplit("/", 1)[-1]
                if device in devices:
                    self._answer(200, {"id": device, "templates": [], "attrs": {}})
                else:
                    self._answer(404, {"message": f"No such device: {device}"})

            def do_PUT(self) -> None:
                parts = self.path.split("/")  # /internal/tenants/<t>/devices/<id>/actuate
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if parts[5] not in devices:
                    self._answer(404, {"message": f"No such device: {parts[5]}"})
                    return
                stub.actuations.append((f"{parts[3]}/{parts[5]}", body))
                self._answer(200, {"message": "ok"})

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dm() -> Iterator[DeviceManagerStandIn]:
    stub = DeviceManagerStandIn({"btn1", "lamp1"})
    yield stub
    stub.close()


def test_client(dm: DeviceManagerStandIn) -> None:
    client = DeviceManagerClient(dm.url)
    client.actuate("acme", "lamp1", {"light": "off"})
    assert dm.actuations == [("acme/lamp1", {"attrs": {"light": "off"}})]
    with pytest.raises(NodeError, match="404"):
        client.actuate("acme", "ghost", {"light": "off"})
    assert client.get("acme", "lamp1") == {"id": "lamp1", "templates": [], "attrs": {}}
    assert client.get("acme", "ghost") is None


def test_flow_actuates_a_device(
    dm: DeviceManagerStandIn,
    api: Api,
    unique: str,
    start_worker: Callable[..., Any],
    send: Callable[[str, Any, str], None],
) -> None:
    nodes = [
        flows.tab(),
        flows.event_in("in", "btn1", ["c"]),
        flows.change("c", [flows.set_rule("command.light", "payload.data.attrs.pressed", "msg")], ["act"]),
        {
            "id": "act",
            "type": "multi actuate",
            "z": flows.TAB,
            "name": "lamp",
            "device_source": "configured",
            "devices_source_dynamic": "",
            "devices_source_dynamicFieldType": "msg",
            "devices_source_configured": ["lamp1"],
            "attrs": "command",
            "_devices_loaded": True,
            "x": 400,
            "y": 40,
            "wires": [],
        },
    ]
    api.create(nodes)
    start_worker(device_manager_url=dm.url)
    send(
        device_data(unique),
        {"metadata": {"deviceid": "btn1", "tenant": unique, "timestamp": 1}, "attrs": {"pressed": "on"}},
        "btn1",
    )
    wait_for(lambda: dm.actuations, what="the actuation")
    assert dm.actuations == [(f"{unique}/lamp1", {"attrs": {"light": "on"}})]
