"""The business rules, on an in-memory fake of the store port (a transaction commits only when it succeeds)."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from device_manager.models import Attr, Device, DeviceSpec, PageRequest, Template, TemplateSpec
from device_manager.service import DeviceManager, NotConfigurable
from ondas.errors import Conflict, Invalid, NotFound, Unavailable

pytestmark = pytest.mark.unit

T0 = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass
class _Data:
    templates: dict[tuple[str, int], Template] = field(default_factory=dict)
    devices: dict[tuple[str, str], Device] = field(default_factory=dict)
    events: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)


class FakeTx:
    def __init__(self, data: _Data) -> None:
        self.d = data

    def _next(self, tenant: str, name: str) -> int:
        value = self.d.counters.get((tenant, name), 0) + 1
        self.d.counters[(tenant, name)] = value
        return value

    def insert_template(self, tenant: str, spec: TemplateSpec, created: datetime) -> Template:
        tid = self._next(tenant, "template")
        attrs = tuple(
            Attr(self._next(tenant, "attr"), tid, a.label, a.type, a.value_type, created, a.static_value)
            for a in spec.attrs
        )
        self.d.templates[(tenant, tid)] = Template(tid, spec.label, created, attrs)
        return self.d.templates[(tenant, tid)]

    def get_templates(self, tenant: str, ids: list[int]) -> dict[int, Template]:
        return {i: self.d.templates[(tenant, i)] for i in ids if (tenant, i) in self.d.templates}

    def list_templates(self, tenant: str, page: PageRequest) -> tuple[list[Template], int]:
        mine = [t for (ten, _), t in sorted(self.d.templates.items()) if ten == tenant]
        return mine[page.offset : page.offset + page.page_size], len(mine)

    def insert_device(self, tenant: str, device: Device) -> bool:
        if (tenant, device.id) in self.d.devices:
            return False
        self.d.devices[(tenant, device.id)] = device
        return True

    def get_device(self, tenant: str, device_id: str) -> Device | None:
        return self.d.devices.get((tenant, device_id))

    def list_devices(self, tenant: str, page: PageRequest | None) -> tuple[list[Device], int]:
        mine = [d for (ten, _), d in self.d.devices.items() if ten == tenant]
        if page is None:
            return mine, len(mine)
        return mine[page.offset : page.offset + page.page_size], len(mine)

    def delete_device(self, tenant: str, device_id: str) -> bool:
        return self.d.devices.pop((tenant, device_id), None) is not None

    def add_event(self, tenant: str, topic: str, key: str, payload: bytes) -> None:
        self.d.events.append((tenant, topic, key, json.loads(payload)))


class FakeStore:
    def __init__(self) -> None:
        self.data = _Data()

    @contextmanager
    def transaction(self) -> Iterator[FakeTx]:
        work = copy.deepcopy(self.data)
        yield FakeTx(work)
        self.data = work  # only reached when the block did not raise


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def service(store: FakeStore) -> DeviceManager:
    ids = (f"{i:06x}" for i in itertools.count(0xA0))
    return DeviceManager(store, clock=lambda: T0, clock_ms=lambda: 1_557_493_697_000, new_id=lambda: next(ids))


THERMOMETER_FAN = {"label": "fan", "type": "actuator", "value_type": "float"}
THERMOMETER = TemplateSpec.parse(
    {
        "label": "Thermometer",
        "attrs": [
            {"label": "temperature", "type": "dynamic", "value_type": "float"},
            {"label": "fan", "type": "actuator", "value_type": "float"},
        ],
    }
)


def test_create_device_queues_a_create_event(service: DeviceManager, store: FakeStore) -> None:
    template = service.create_template("admin", THERMOMETER)
    [device] = service.create_devices("admin", DeviceSpec("device", (template.id,)))
    assert device.label == "device"
    [(tenant, topic, key, event)] = store.data.events
    assert (tenant, topic, key) == ("admin", "admin.dojot.device-manager.device", device.id)
    assert event == {"event": "create", "meta": {"service": "admin"}, "data": device.to_dict()}


def test_count_labels_devices_with_a_suffix(service: DeviceManager, store: FakeStore) -> None:
    template = service.create_template("admin", THERMOMETER)
    devices = service.create_devices("admin", DeviceSpec("sensor", (template.id,)), count=3)
    assert [d.label for d in devices] == ["sensor_0", "sensor_1", "sensor_2"]
    assert [e[2] for e in store.data.events] == [d.id for d in devices]


@pytest.mark.parametrize("count", [0, 101], ids=["zero", "too-many"])
def test_count_is_bounded(service: DeviceManager, count: int) -> None:
    with pytest.raises(Invalid):
        service.create_devices("admin", DeviceSpec("d", ()), count=count)


def test_unknown_template_writes_nothing(service: DeviceManager, store: FakeStore) -> None:
    template = service.create_template("admin", THERMOMETER)
    with pytest.raises(Invalid) as err:
        service.create_devices("admin", DeviceSpec("d", (template.id, 7)))
    assert "No such template: 7" in err.value.message
    assert store.data.devices == {} and store.data.events == []


def test_templates_of_other_tenants_are_unknown(service: DeviceManager) -> None:
    template = service.create_template("other", THERMOMETER)
    with pytest.raises(Invalid):
        service.create_devices("admin", DeviceSpec("d", (template.id,)))
    with pytest.raises(NotFound):
        service.get_template("admin", template.id)


def test_repeated_attributes_across_templates(service: DeviceManager) -> None:
    t1 = service.create_template("admin", THERMOMETER)
    t2 = service.create_template("admin", TemplateSpec.parse({"label": "x", "attrs": [THERMOMETER_FAN]}))
    with pytest.raises(Invalid) as err:
        service.create_devices("admin", DeviceSpec("d", (t1.id, t2.id)))
    assert "repeated attributes" in err.value.message


def test_id_collisions_are_retried(store: FakeStore) -> None:
    ids = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    service = DeviceManager(store, clock=lambda: T0, new_id=lambda: next(ids))
    first = service.create_devices("admin", DeviceSpec("a", ()))
    second = service.create_devices("admin", DeviceSpec("b", ()))
    assert [first[0].id, second[0].id] == ["aaaaaa", "bbbbbb"]


def test_id_space_exhausted_is_unavailable(store: FakeStore) -> None:
    service = DeviceManager(store, clock=lambda: T0, new_id=lambda: "aaaaaa")
    service.create_devices("admin", DeviceSpec("a", ()))
    with pytest.raises(Unavailable):
        service.create_devices("admin", DeviceSpec("b", ()))


def test_explicit_id(service: DeviceManager) -> None:
    [device] = service.create_devices("admin", DeviceSpec("a", (), "abc123"))
    assert device.id == "abc123"
    with pytest.raises(Conflict):
        service.create_devices("admin", DeviceSpec("b", (), "abc123"))
    with pytest.raises(Invalid):
        service.create_devices("admin", DeviceSpec("c", (), "abc124"), count=2)
    # The same id is free in another tenant.
    assert service.create_devices("other", DeviceSpec("a", (), "abc123"))[0].id == "abc123"


def test_actuate_emits_configure(service: DeviceManager, store: FakeStore) -> None:
    template = service.create_template("admin", THERMOMETER)
    [device] = service.create_devices("admin", DeviceSpec("d", (template.id,)))
    service.actuate("admin", device.id, {"fan": 100})
    _, _, key, event = store.data.events[-1]
    assert key == device.id
    assert event == {
        "event": "configure",
        "meta": {"service": "admin", "timestamp": 1_557_493_697_000},
        "data": {"id": device.id, "attrs": {"fan": 100}},
    }


def test_actuate_refuses_non_actuators(service: DeviceManager, store: FakeStore) -> None:
    template = service.create_template("admin", THERMOMETER)
    [device] = service.create_devices("admin", DeviceSpec("d", (template.id,)))
    with pytest.raises(NotConfigurable) as err:
        service.actuate("admin", device.id, {"fan": 1, "temperature": 20, "ghost": 0})
    body = err.value.to_dict()
    assert err.value.status == 403
    assert body["error"] == "forbidden"
    assert body["attrs"] == ["temperature", "ghost"]
    assert body["status"] == "some of the attributes are not configurable"
    assert len(store.data.events) == 1  # only the create


def test_actuate_and_delete_are_tenant_scoped(service: DeviceManager, store: FakeStore) -> None:
    template = service.create_template("admin", THERMOMETER)
    [device] = service.create_devices("admin", DeviceSpec("d", (template.id,)))
    with pytest.raises(NotFound):
        service.actuate("other", device.id, {"fan": 1})
    with pytest.raises(NotFound):
        service.delete_device("other", device.id)
    with pytest.raises(NotFound):
        service.get_device("other", device.id)
    assert service.get_device("admin", device.id) == device


def test_delete_emits_remove(service: DeviceManager, store: FakeStore) -> None:
    [device] = service.create_devices("admin", DeviceSpec("d", ()))
    assert service.delete_device("admin", device.id) == device
    assert store.data.events[-1][3] == {"event": "remove", "meta": {"service": "admin"}, "data": {"id": device.id}}
    with pytest.raises(NotFound):
        service.delete_device("admin", device.id)


def test_listings(service: DeviceManager) -> None:
    for i in range(3):
        service.create_template("admin", TemplateSpec(f"t{i}"))
    page = service.list_templates("admin", PageRequest(2, 2))
    assert [t.label for t in page.items] == ["t2"]
    assert page.pagination() == {"page": 2, "total": 2, "has_next": False, "next_page": None}
    service.create_devices("admin", DeviceSpec("d", ()), count=2)
    assert len(service.all_devices("admin")) == 2
    assert service.all_devices("other") == []
