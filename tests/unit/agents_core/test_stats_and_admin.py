"""Agent statistics and the operator routes (statistics per tenant and device, log level at run time)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from agents.core.admin import admin_blueprint
from agents.core.cache import DeviceCache
from agents.core.stats import Statistics
from ondas.health import Health
from ondas.web import create_app
from tests.tokens import TokenMaker

pytestmark = pytest.mark.unit

PREFIX = "/test-agent/v1"


def test_device_and_tenant_counts() -> None:
    s = Statistics()
    s.received("t1", "a")
    s.received("t1", "a")
    s.published("t1", "a")
    s.dropped("t1", "a", "wrong_type")
    s.sent("t1", "a")
    s.received("t1", "b")
    s.dropped("t1", None, "unknown_device")
    s.received("t2", "a")

    a = s.device("t1", "a")
    assert (a["received"], a["published"], a["sent_to_device"]) == (2, 1, 1)
    assert a["dropped"] == {"wrong_type": 1}
    assert isinstance(a["last_seen"], int)

    t1 = s.tenant("t1")
    assert (t1["received"], t1["published"], t1["devices_seen"]) == (3, 1, 2)
    assert t1["dropped"] == {"unknown_device": 1, "wrong_type": 1}
    assert t1["dropped_unknown_device"] == {"unknown_device": 1}
    assert s.tenant("t2")["received"] == 1  # tenants never mix


def test_forget_a_device_and_a_tenant() -> None:
    s = Statistics()
    s.received("t1", "a")
    s.received("t1", "b")
    s.forget("t1", "a")
    assert s.device("t1", "a")["received"] == 0
    assert s.tenant("t1")["received"] == 1
    s.forget("t1")
    assert s.tenant("t1")["devices_seen"] == 0


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[FlaskClient, TokenMaker, Statistics]]:
    tokens = TokenMaker(tmp_path)
    public = tokens.public_file.read_text()
    cache = DeviceCache()
    cache.replace_tenant("t1", [{"id": "a"}])
    cache.replace_tenant("t2", [{"id": "a"}])
    stats = Statistics()
    flask_app: Flask = create_app("test", Health("test"), public_key=lambda: public)
    flask_app.register_blueprint(admin_blueprint(PREFIX, stats, cache, "admin"))
    root = logging.getLogger()
    level = root.level
    yield flask_app.test_client(), tokens, stats
    root.setLevel(level)


def auth(tokens: TokenMaker, tenant: str, profile: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.token(tenant, profile=profile)}"}


def test_statistics_are_the_callers_tenants_only(app) -> None:
    client, tokens, stats = app
    stats.received("t1", "a")
    stats.received("t2", "a")
    stats.received("t2", "a")
    r = client.get(f"{PREFIX}/statistics", headers=auth(tokens, "t1"))
    assert r.status_code == 200
    assert r.json["tenant"] == "t1" and r.json["received"] == 1
    r = client.get(f"{PREFIX}/statistics/devices/a", headers=auth(tokens, "t2"))
    assert r.status_code == 200 and r.json["received"] == 2
    assert client.get(f"{PREFIX}/statistics/devices/nope", headers=auth(tokens, "t1")).status_code == 404
    assert client.get(f"{PREFIX}/statistics").status_code == 401


def test_log_level_changes_only_for_management_admins(app) -> None:
    client, tokens, _ = app
    r = client.put(f"{PREFIX}/log-level", json={"level": "debug"}, headers=auth(tokens, "t1"))
    assert r.status_code == 403
    r = client.put(f"{PREFIX}/log-level", json={"level": "debug"}, headers=auth(tokens, "admin", profile="user"))
    assert r.status_code == 403
    r = client.put(f"{PREFIX}/log-level", json={"level": "loud"}, headers=auth(tokens, "admin"))
    assert r.status_code == 400 and "debug" in r.json["message"]
    r = client.put(f"{PREFIX}/log-level", json={"level": "debug"}, headers=auth(tokens, "admin"))
    assert r.status_code == 200 and r.json == {"level": "DEBUG"}
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("gmqtt").level == logging.WARNING
    r = client.get(f"{PREFIX}/log-level", headers=auth(tokens, "t1"))
    assert r.json == {"level": "DEBUG"}
