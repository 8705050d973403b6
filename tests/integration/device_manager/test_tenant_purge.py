"""A deleted tenant's templates, devices, queued events and ids leave the device manager: the relay process's
tenant purge (ondas.tenancy.TenantPurge on the real broker) against the real PostgreSQL store."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from flask import Flask
from flask.testing import FlaskClient

from device_manager.app import build_tenant_purge
from device_manager.settings import Settings
from ondas.contracts import TenancyEvent
from ondas.kafka import ensure_topics, producer_config
from ondas.topics import TENANCY_TOPIC
from tests.auth_stub import AuthStub
from tests.integration.device_manager.helpers import Api, wait_for

pytestmark = pytest.mark.integration

TEMPLATE = {"label": "t", "attrs": [{"label": "temperature", "type": "dynamic", "value_type": "float"}]}


@pytest.fixture
def auth() -> Iterator[AuthStub]:
    stub = AuthStub([])
    yield stub
    stub.close()


@pytest.fixture
def purging(app: Flask, settings: Settings, auth: AuthStub) -> Iterator[Any]:
    """The purge as the relay runs it (after the tables exist: ``app`` created them), with its own group (tests of
    one session share the tenancy topic)."""
    settings = dataclasses.replace(settings, common=dataclasses.replace(settings.common, auth_url=auth.url))
    purge, store = build_tenant_purge(settings, group_id=f"dm-purge-{uuid.uuid4().hex[:8]}")
    purge.start()
    wait_for(lambda: purge.ready, what="tenant purge consumer")
    yield purge
    purge.stop()
    store.close()


@pytest.fixture
def tenants(client: FlaskClient, tokens: Any, unique: str) -> tuple[Api, Api]:
    return Api(client, tokens.headers(unique)), Api(client, tokens.headers(f"{unique}b"))


def queued(db_url: str, tenant: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE tenant = %s", (tenant,)).fetchone()
    return int(row[0]) if row else 0


def delete_event(bootstrap: str, tenant: str, at_ms: int | None = None) -> None:
    ensure_topics(bootstrap, [TENANCY_TOPIC])
    p = Producer(producer_config(bootstrap))
    extra = {"timestamp": at_ms} if at_ms is not None else {}
    p.produce(TENANCY_TOPIC, TenancyEvent(type="DELETE", tenant=tenant).to_bytes(), key=tenant, **extra)
    assert p.flush(10) == 0


def make(api: Api, label: str) -> tuple[int, str]:
    template = api.post("/template", {**TEMPLATE, "label": label})["template"]
    device = api.post("/device", {"templates": [template["id"]], "label": label})["devices"][0]
    return template["id"], device["id"]


def contents(api: Api) -> tuple[list[Any], list[str]]:
    return [t["id"] for t in api.get("/template")["templates"]], [d["id"] for d in api.get("/device")["devices"]]


def test_a_deleted_tenant_is_purged_and_others_are_untouched(
    purging: Any, tenants: tuple[Api, Api], auth: AuthStub, settings: Settings, unique: str
) -> None:
    a, b = tenants
    first_template, _ = make(a, "a1")
    make(a, "a2")
    make(b, "b1")
    kept = contents(b)
    auth.tenants = [f"{unique}b"]  # a is gone from auth
    delete_event(settings.common.kafka_bootstrap, unique)
    wait_for(lambda: contents(a) == ([], []), what="tenant a purged")
    assert contents(b) == kept
    # No relay runs here, so the events of both tenants' changes were still queued: only a's went.
    assert queued(settings.db_url, unique) == 0
    assert queued(settings.db_url, f"{unique}b") > 0
    # Ids start again where a new tenant's do: the id counters went with the tenant.
    again, _ = make(a, "a3")
    assert again == first_template


def test_a_tenant_created_again_before_the_purge_keeps_what_it_created_since(
    purging: Any, tenants: tuple[Api, Api], auth: AuthStub, settings: Settings, unique: str
) -> None:
    a, _ = tenants
    old_template, old_device = make(a, "old")
    deleted_at = int(time.time() * 1000)
    time.sleep(0.05)
    new_template, new_device = make(a, "new")
    auth.tenants = [unique]  # auth has a tenant of this name again
    delete_event(settings.common.kafka_bootstrap, unique, at_ms=deleted_at)
    wait_for(lambda: contents(a) == ([new_template], [new_device]), what="only the old rows purged")
    assert old_device not in contents(a)[1]
    # The counters stayed: the next id follows the new tenant's.
    newer, _ = make(a, "newer")
    assert newer > new_template > old_template
