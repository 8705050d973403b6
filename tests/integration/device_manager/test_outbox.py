"""The transactional outbox: events are written with the change and published by the relay, later if need be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from device_manager.settings import Settings
from ondas import topics
from tests.integration.device_manager.helpers import RelayRunner, consume, outbox_count, wait_for
from tests.integration.device_manager.test_api import create_device, create_template

pytestmark = pytest.mark.integration


def test_change_made_while_the_relay_is_down_is_published_when_it_runs(
    client: FlaskClient,
    start_relay: Callable[[], RelayRunner],
    settings: Settings,
    tokens: Any,
    unique: str,
    kafka_bootstrap: str,
) -> None:
    headers = tokens.headers(unique)
    device_id = create_device(client, headers, create_template(client, headers))
    assert client.put(f"/device/{device_id}/actuate", json={"attrs": {"fan": 7}}, headers=headers).status_code == 200
    assert outbox_count(settings.db_url) == 2  # committed with the changes, nothing published yet

    runner = start_relay()
    events = consume(kafka_bootstrap, topics.device_events(unique), 2)
    assert [(k, v["event"]) for k, v in events] == [(device_id, "create"), (device_id, "configure")]
    assert events[1][1]["data"] == {"id": device_id, "attrs": {"fan": 7}}
    wait_for(lambda: outbox_count(settings.db_url) == 0, what="the outbox to be emptied")
    assert runner.relay.status() == {"state": "active", "last_error": None}


def test_failed_change_writes_no_event(client: FlaskClient, settings: Settings, tokens: Any, unique: str) -> None:
    headers = tokens.headers(unique)
    template = create_template(client, headers)
    resp = client.post("/device", json={"label": "x", "templates": [template, 999]}, headers=headers)
    assert resp.status_code == 404
    assert client.get("/device", headers=headers).get_json()["devices"] == []
    assert outbox_count(settings.db_url) == 0


def test_only_one_relay_is_active(
    client: FlaskClient, start_relay: Callable[[], RelayRunner], tokens: Any, unique: str, kafka_bootstrap: str
) -> None:
    first = start_relay()
    wait_for(lambda: first.relay.state == "active", what="the first relay to become active")
    second = start_relay()
    wait_for(lambda: second.relay.state == "standby", what="the second relay to stand by")

    headers = tokens.headers(unique)
    device_id = create_device(client, headers, create_template(client, headers))
    [(key, event)] = consume(kafka_bootstrap, topics.device_events(unique), 1)
    assert key == device_id and event["event"] == "create"

    first.stop()
    wait_for(lambda: second.relay.state == "active", what="the standby relay to take over")
    assert client.delete(f"/device/{device_id}", headers=headers).status_code == 200
    events = consume(kafka_bootstrap, topics.device_events(unique), 2)
    assert [v["event"] for _, v in events] == ["create", "remove"]
