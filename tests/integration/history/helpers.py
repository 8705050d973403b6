"""Helpers of history's integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask.testing import FlaskClient

from history.app import create_history_app
from history.settings import HistorySettings
from history.store_mongo import MongoHistoryStore
from ondas.settings import CommonSettings

PREFIX = "ondas_history_"


@contextmanager
def make_client(mongo_url: str, tokens: Any, max_results: int) -> Iterator[FlaskClient]:
    """History's real app on the real store, answering at most ``max_results`` entries per attribute."""
    # Test tokens and no auth: signatures only (tests/e2e/test_direct_ports.py covers the full check).
    common = CommonSettings(
        "127.0.0.1:1", "http://127.0.0.1:1", str(tokens.public_file), "INFO", "127.0.0.1", authz="signature"
    )
    settings = HistorySettings(
        common=common, mongo_url=mongo_url, http_port=0, db_prefix=PREFIX, max_results=max_results
    )
    store = MongoHistoryStore(mongo_url, PREFIX)
    app = create_history_app(settings, store=store)
    with app.test_client() as c:
        yield c
    store.close()
