"""Wiring of history: store, service, Flask app with the platform's conventions."""

from __future__ import annotations

import re

from flask import Flask

from history.api import blueprint
from history.service import HistoryService, HistoryStore
from history.settings import HistorySettings
from history.store_mongo import MongoHistoryStore
from ondas.authn import TokenCheck, load_public_key
from ondas.health import Health
from ondas.web import create_app

# gateway/kong.yml: route "history-latest" (``~/device/[^/]+/latest$``, not stripped) and route "history"
# (``/history``, stripped). A request on history's own port is checked as the gateway sees it: the latest values
# under the path dojot's clients use, everything else under ``/history``.
_LATEST = re.compile(r"/device/[^/]+/latest")


def gateway_path(path: str) -> str:
    """The path through the gateway of history's own ``path`` (what auth's permissions are written for)."""
    return path if _LATEST.fullmatch(path) else "/history" + path


def create_history_app(settings: HistorySettings, store: HistoryStore | None = None) -> Flask:
    """The history app. Pass ``store`` to share (and later close) a store; otherwise one is built."""
    if store is None:
        store = MongoHistoryStore(settings.mongo_url, settings.db_prefix)
    health = Health("history")
    health.add_check("mongo", store.ping)
    key_file = settings.common.jwt_public_key_file
    load_public_key(key_file)  # fail at start, not on the first request, when the key is missing

    def public_key() -> str:
        return load_public_key(key_file)

    token_check = TokenCheck.from_settings(settings.common, public_key, gateway_path=gateway_path)
    app = create_app("history", health, public_key=public_key, token_check=token_check)
    app.register_blueprint(blueprint(HistoryService(store, settings.max_results)))
    return app
