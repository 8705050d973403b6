"""The MQTT agent's REST API (credentials mode): per-device MQTT credentials, dojot basic-auth style.

``POST /basic-auth/v1/devices/<device-id>/basic-credentials`` (Bearer token; the tenant is the token's) creates
the device's password, or replaces it (the old one stops working and the device's live sessions end), and
answers ``{"username": "<tenant>:<device-id>", "password": "..."}``. The password is shown this once and kept
only hashed: by Mosquitto's dynamic security plugin (credentials mode) and, when the agent has a Redis URL, in
the device credential store every agent reads (agents/core/credentials_redis.py; the HTTP agent verifies it;
this agent deletes a removed device's entry, commands.py). With a
store and no plugin (unsecured MQTT mode) only the store is written. The device must exist in the device manager
(404 otherwise; asked each time, 503 when it does not answer).

``GET /mqtt-agent/v1/statistics[/devices/<id>]`` and ``GET|PUT /mqtt-agent/v1/log-level``: the operator routes
every agent serves (agents/core/admin.py).

Routes only, with their collaborators injected (:func:`blueprint`); app.py builds the Flask app around them and
serves it on a small threaded server inside the agent process (administrative routes, not a data path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from flask import Blueprint, Response, jsonify

from agents.core.cache import Device
from agents.core.credentials_redis import RedisCredentialStore
from agents.core.payload import Drop, parse_device
from agents.mqtt.provisioning import DynsecError, Provisioner, new_password
from ondas.errors import NotFound, Unavailable
from ondas.web import principal

log = logging.getLogger("agents.mqtt.api")

OPERATIONS_PREFIX = "/mqtt-agent/v1"

RunOnLoop = Callable[[Coroutine[Any, Any, None]], None]


def blueprint(
    lookup: Callable[[str, str], Device | None],
    provisioner: Provisioner | None,
    run: RunOnLoop,
    credentials: RedisCredentialStore | None,
) -> Blueprint:
    """The credentials route: passwords go to the broker's plugin (``provisioner``, run on the agent's loop with
    ``run``) and/or the device credential store; ``lookup`` asks the device manager whether the device exists."""
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

    return bp
