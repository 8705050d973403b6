"""The service on the real PostgreSQL store, with its clocks and id source under the test's control."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from device_manager.models import DeviceSpec, TemplateSpec
from device_manager.service import DeviceManager
from device_manager.store_postgres import PostgresStore
from ondas.errors import Invalid, NotFound, Unavailable
from tests.integration.device_manager.helpers import outbox_count

pytestmark = pytest.mark.integration

T0 = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(dm_db: str) -> Iterator[PostgresStore]:
    s = PostgresStore(dm_db, max_connections=2)
    s.migrate()
    yield s
    s.close()


def _service(store: PostgresStore, ids: list[str]) -> DeviceManager:
    source = iter(ids)
    return DeviceManager(store, clock=lambda: T0, clock_ms=lambda: 1_557_493_697_000, new_id=lambda: next(source))


def test_taken_ids_are_retried(store: PostgresStore, unique: str) -> None:
    service = _service(store, ["aaaaaa", "aaaaaa", "bbbbbb", "cccccc", "cccccc", "dddddd", "aaaaaa", "eeeeee"])
    [first] = service.create_devices(unique, DeviceSpec("a"))
    [second] = service.create_devices(unique, DeviceSpec("b"))
    assert (first.id, second.id) == ("aaaaaa", "bbbbbb")
    # In one batch: a repeated id is drawn again, and an id taken in the database is retried.
    batch = service.create_devices(unique, DeviceSpec("c"), count=3)
    assert [d.id for d in batch] == ["cccccc", "dddddd", "eeeeee"]
    assert [d.label for d in batch] == ["c_0", "c_1", "c_2"]


def test_an_exhausted_id_space_is_unavailable_and_writes_nothing(store: PostgresStore, unique: str, dm_db: str) -> None:
    service = _service(store, ["aaaaaa"] * 100)
    service.create_devices(unique, DeviceSpec("a"))
    before = outbox_count(dm_db)
    with pytest.raises(Unavailable):
        service.create_devices(unique, DeviceSpec("b"))
    assert [d.id for d in service.all_devices(unique)] == ["aaaaaa"]
    assert outbox_count(dm_db) == before


def test_a_failed_bulk_create_rolls_back_every_device_and_event(store: PostgresStore, unique: str, dm_db: str) -> None:
    counter = itertools.count()
    service = DeviceManager(store, clock=lambda: T0, new_id=lambda: f"{next(counter):06x}")
    template = service.create_template(unique, TemplateSpec.parse({"label": "t"}))
    with pytest.raises(NotFound):
        service.create_devices(unique, DeviceSpec("d", (template.id, 404)), count=50)
    assert service.all_devices(unique) == []
    assert outbox_count(dm_db) == 0


def test_stores_are_bound_to_one_tenant(store: PostgresStore, unique: str) -> None:
    service = _service(store, ["abcdef", "abcdef"])
    service.create_devices(f"{unique}a", DeviceSpec("a"))
    service.create_devices(f"{unique}b", DeviceSpec("b"))  # the same id, another tenant
    with store.transaction(f"{unique}a") as tx:
        assert tx.get_device("abcdef") is not None
        assert tx.get_device("abcdef").label == "a"  # type: ignore[union-attr]
        assert [d.label for d in tx.get_devices(["abcdef"])] == ["a"]
    with pytest.raises(Invalid):
        store.transaction("Not A Tenant").__enter__()
