"""Wiring of history: store, service, Flask app with the platform's conventions."""

from __future__ import annotations

from flask import Flask

from history.api import bp
from history.service import HistoryService, HistoryStore
from history.settings import HistorySettings
from history.store_mongo import MongoHistoryStore
from ondas.authn import load_public_key
from ondas.health import Health
from ondas.web import create_app


def create_history_app(settings: HistorySettings, store: HistoryStore | None = None) -> Flask:
    """The history app. Pass ``store`` to share (and later close) a store; otherwise one is built."""
    if store is None:
        store = MongoHistoryStore(settings.mongo_url, settings.db_prefix)
    health = Health("history")
    health.add_check("mongo", store.ping)
    key_file = settings.common.jwt_public_key_file
    load_public_key(key_file)  # fail at start, not on the first request, when the key is missing
    app = create_app("history", health, public_key=lambda: load_public_key(key_file))
    app.extensions["history_service"] = HistoryService(store, settings.max_results)
    app.register_blueprint(bp)
    return app
