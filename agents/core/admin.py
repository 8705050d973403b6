"""The operator routes every agent serves next to its own API, under its prefix (``/mqtt-agent/v1``,
``/http-agent/v1``):

- ``GET <prefix>/statistics``: the caller's tenant's totals (received, published, dropped by reason, sent to
  devices, last seen) as counted by this agent process (see :mod:`agents.core.stats`).
- ``GET <prefix>/statistics/devices/<device-id>``: one device of the caller's tenant (404 for a device the
  agent does not know).
- ``GET <prefix>/log-level`` and ``PUT <prefix>/log-level`` ``{"level": "debug"}``: the process's log level at
  run time. The level is process-wide, so only an administrator (profile ``admin``) of the management tenant
  may change it.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from agents.core.cache import DeviceCache
from agents.core.stats import Statistics
from ondas.errors import Forbidden, Invalid, NotFound
from ondas.web import json_body, principal

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
NOISY = ("kafka", "urllib3", "gmqtt", "pymongo")


def set_log_level(level: str) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    for name in NOISY:  # third-party chatter stays at WARNING or above, as ondas.log sets it up
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def admin_blueprint(prefix: str, stats: Statistics, cache: DeviceCache, management_tenant: str) -> Blueprint:
    bp = Blueprint("agent_admin", __name__)

    @bp.get(f"{prefix}/statistics")
    def _tenant() -> Response:
        return jsonify(stats.tenant(principal().tenant))

    @bp.get(f"{prefix}/statistics/devices/<device_id>")
    def _device(device_id: str) -> Response:
        tenant = principal().tenant
        if cache.get(tenant, device_id) is None:
            raise NotFound(f"device {device_id!r} not found")
        return jsonify(stats.device(tenant, device_id))

    @bp.get(f"{prefix}/log-level")
    def _get_level() -> Response:
        principal()
        return jsonify({"level": logging.getLevelName(logging.getLogger().level)})

    @bp.put(f"{prefix}/log-level")
    def _set_level() -> Response:
        who = principal()
        if who.tenant != management_tenant or who.profile != "admin":
            raise Forbidden("only administrators of the management tenant change an agent's log level")
        body = json_body()
        level = body.get("level")
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise Invalid(f'send {{"level": one of {", ".join(lv.lower() for lv in LEVELS)}}}')
        set_log_level(level.upper())
        logging.getLogger("agents.admin").warning("log level changed", extra={"level": level.upper()})
        return jsonify({"level": level.upper()})

    return bp
