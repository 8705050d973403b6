"""The MQTT agent's REST API (credentials mode): per-device MQTT credentials, dojot basic-auth style.

``POST /basic-auth/v1/devices/<device-id>/basic-credentials`` (Bearer token; the tenant is the token's) creates
the device's password, or replaces it (the old one stops working and the device's live sessions end), and
answers ``{"username": "<tenant>:<device-id>", "password": "..."}``. The password is shown this once and kept
only hashed: by Mosquitto's dynamic security plugin (credentials mode) and, when the agent has a Redis URL, in
the device credential store every agent reads (agents/core/credentials.py; the HTTP agent verifies it). With a
store and no plugin (unsecured MQTT mode) only the store is written. The device must exist in the device manager
(404 otherwise; asked each time, 503 when it does not answer).

``GET /mqtt-agent/v1/statistics[/devices/<id>]`` and ``GET|PUT /mqtt-agent/v1/log-level``: the operator routes
every agent serves (agents/core/admin.py).

Served by a small threaded server inside the agent process (administrative routes, not a data path).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from flask import Blueprint, Flask, Response, jsonify
from werkzeug.serving import BaseWSGIServer, make_server

from agents.core.admin import admin_blueprint
from agents.core.cache import Device, DeviceCache
from agents.core.credentials import CredentialStore
from agents.core.payload import Drop, parse_device
from agents.core.stats import Statistics
from agents.mqtt.provisioning import DynsecError, Provisioner, new_password
from ondas.authn import TokenCheck
from ondas.errors import NotFound, Unavailable
from ondas.health import Health
from ondas.settings import CommonSettings
from ondas.web import create_app, principal

log = logging.getLogger("agents.mqtt.api")

TIMEOUT_S = 15.0
OPERATIONS_PREFIX = "/mqtt-agent/v1"

RunOnLoop = Callable[[Coroutine[Any, Any, None]], None]


def build_app(
    service: str,
    health: Health,
    public_key: Callable[[], str],
    cache: DeviceCache,
    lookup: Callable[[str, str], Device | None],
    provisioner: Provisioner | None,
    run: RunOnLoop,
    credentials: CredentialStore | None = None,
    stats: Statistics | None = None,
    management_tenant: str = "admin",
    token_check: TokenCheck | None = None,
) -> Flask:
    # Operator (and credential) routes: every token checked as the gateway checks it (ONDAS_AUTHZ).
    if token_check is None:
        token_check = TokenCheck.from_settings(CommonSettings.from_env(), public_key)
    app = create_app(service, health, public_key=public_key, max_body_bytes=4096, token_check=token_check)
    bp = Blueprint("basic_auth", __name__)

    @bp.post("/basic-auth/v1/devices/<device_id>/basic-credentials")
    def _credentials(device_id: str) -> tuple[Response, int]:
        tenant = principal().tenant
        try:
            ref = parse_device(f"{tenant}:{device_id}")
        except Drop as exc:
            raise NotFound(f"device {device_id!r} not found") from exc
        # Asked of the device manager, not the cache: a device removed a moment ago may still be cached here (the
        # cache follows device events), and credentials must not be handed out for it.
        try:
            found = lookup(tenant, device_id)
        except Exception as exc:  # unreachable or a bad answer: the caller may retry
            raise Unavailable(f"the device manager did not answer: {type(exc).__name__}") from exc
        if found is None:
            raise NotFound(f"device {device_id!r} not found")
        password = new_password()
        if provisioner is not None:
            try:
                run(provisioner.set_password(ref.username, password))
            except DynsecError as exc:
                raise Unavailable(f"the broker refused the credentials: {exc.error}") from exc
        if credentials is not None:
            credentials.set_password(ref.tenant, ref.device_id, password)  # Unavailable (503) when Redis is away
        log.info("device credentials generated", extra={"device": device_id})
        return jsonify({"username": ref.username, "password": password}), 200

    if provisioner is not None or credentials is not None:  # else there is nowhere to keep a password
        app.register_blueprint(bp)
    if stats is not None:
        app.register_blueprint(admin_blueprint(OPERATIONS_PREFIX, stats, cache, management_tenant))
    return app


def run_on(loop: asyncio.AbstractEventLoop) -> RunOnLoop:
    """Run a coroutine on the agent's event loop from a request thread and wait for it."""

    def run(coro: Coroutine[Any, Any, None]) -> None:
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            fut.result(TIMEOUT_S)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise Unavailable("the broker did not answer in time") from exc

    return run


class ApiServer:
    def __init__(self, app: Flask, host: str, port: int) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mqtt-agent-api", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("API listening", extra={"port": self._server.server_port})

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
