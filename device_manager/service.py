"""The business rules of the device manager. Every method takes the tenant explicitly.

Each change runs in one store transaction together with the events it causes (transactional outbox), so an
event is published if and only if its change committed. The store's transaction is bound to the tenant, so
nothing here can reach another tenant's rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from device_manager.models import (
    MAX_COUNT,
    Attr,
    AttrSpec,
    Device,
    DeviceSpec,
    Filter,
    Meta,
    MetaSpec,
    OverrideSpec,
    Page,
    PageRequest,
    Template,
    TemplateNotFound,
    TemplatesInUse,
    TemplateSpec,
)
from ondas import topics
from ondas.contracts import DeviceEvent
from ondas.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from ondas.timestamps import now_ms

ID_ATTEMPTS = 20
BACKUPS_KEPT = 5  # import backups kept per tenant
SAMPLE = 10


class Tx(Protocol):
    """What the service needs from storage, inside one transaction bound to one tenant."""

    tenant: str

    def allocate_ids(self, name: str, n: int) -> list[int]: ...

    def raise_ids(self, name: str, floor: int) -> None: ...

    def insert_templates(self, templates: list[Template]) -> None: ...

    def update_template(self, old: Template, new: Template) -> None: ...

    def delete_templates(self, ids: list[int]) -> None: ...

    def get_templates(self, ids: list[int], lock: Literal["share", "update"] | None = None) -> dict[int, Template]: ...

    def list_templates(self, f: Filter, page: PageRequest | None) -> tuple[list[Template], int]: ...

    def template_users(self, template_ids: list[int], sample: int = SAMPLE) -> tuple[int, list[str]]: ...

    def device_ids_using(self, template_id: int) -> list[str]: ...

    def label_clashes(self, template_id: int, labels: list[str]) -> list[tuple[str, int, str, int]]: ...

    def insert_devices(self, devices: list[Device]) -> set[str]:
        """Insert the devices whose id is free; returns the taken ids (those devices are not inserted)."""
        ...

    def update_device(self, device: Device) -> None: ...

    def get_device(self, device_id: str, lock: bool = False) -> Device | None: ...

    def get_devices(self, ids: list[str]) -> list[Device]: ...

    def list_devices(self, f: Filter, page: PageRequest | None) -> tuple[list[Device], int]: ...

    def list_device_ids(self, f: Filter, page: PageRequest | None) -> list[str]: ...

    def count_devices(self, f: Filter) -> int: ...

    def delete_devices(self, ids: list[str] | None) -> list[str]: ...

    def add_events(self, topic: str, events: list[tuple[str, bytes]]) -> None:
        """Queue (key, payload) messages for the outbox relay; published only if this transaction commits."""
        ...

    def save_backup(self, document: dict[str, Any], keep: int) -> None:
        """Store ``document`` (an export) as the tenant's newest import backup; only the newest ``keep`` stay."""
        ...

    def latest_backup(self) -> tuple[datetime, dict[str, Any]] | None:
        """The tenant's newest import backup (created, document), or None."""
        ...


class Store(Protocol):
    def transaction(self, tenant: str) -> AbstractContextManager[Tx]: ...


class NotConfigurable(Forbidden):
    """403 for actuating attributes that are not actuators; keeps dojot's ``status``/``attrs`` keys too."""

    def __init__(self, attrs: list[str]) -> None:
        super().__init__(
            f"some of the attributes are not configurable (not actuators of this device): {', '.join(attrs)}",
            attrs=attrs,
        )
        self.attrs = attrs

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": "some of the attributes are not configurable", "attrs": self.attrs}


@dataclass(frozen=True)
class Configuration:
    """A tenant's configuration as export writes it and import reads it."""

    templates: list[Template]
    devices: list[Device]

    def to_document(self) -> dict[str, Any]:
        """The document ``/export`` returns (and ``/import`` reads)."""
        return {
            "templates": [t.to_dict("single") for t in self.templates],
            "devices": [d.to_dict() for d in self.devices],
        }


@dataclass(frozen=True)
class ImportChanges:
    """What an import changes: ids removed (only before), added (only after) and kept (in both)."""

    templates: tuple[int, int, int]
    devices: tuple[int, int, int]

    def to_dict(self) -> dict[str, Any]:
        def counts(c: tuple[int, int, int]) -> dict[str, int]:
            return {"removed": c[0], "added": c[1], "kept": c[2]}

        return {"templates": counts(self.templates), "devices": counts(self.devices)}


def _changes(before: set[Any], after: set[Any]) -> tuple[int, int, int]:
    return len(before - after), len(after - before), len(before & after)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def new_device_id() -> str:
    return secrets.token_hex(3)


class DeviceManager:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime] = _utcnow,
        clock_ms: Callable[[], int] = now_ms,
        new_id: Callable[[], str] = new_device_id,
    ) -> None:
        self._store = store
        self._clock = clock
        self._clock_ms = clock_ms
        self._new_id = new_id

    def now(self) -> datetime:
        return self._clock()

    # -- events --------------------------------------------------------------------------------------------
    @staticmethod
    def _emit(tx: Tx, kind: str, devices: Iterable[Device]) -> None:
        tenant = tx.tenant
        make = DeviceEvent.created if kind == "create" else DeviceEvent.updated
        tx.add_events(topics.device_events(tenant), [(d.id, make(tenant, d.to_dict()).to_bytes()) for d in devices])

    @staticmethod
    def _emit_removed(tx: Tx, ids: Iterable[str]) -> None:
        tenant = tx.tenant
        tx.add_events(topics.device_events(tenant), [(i, DeviceEvent.removed(tenant, i).to_bytes()) for i in ids])

    # -- templates -----------------------------------------------------------------------------------------
    def create_template(self, tenant: str, spec: TemplateSpec) -> Template:
        with self._store.transaction(tenant) as tx:
            (tid,) = tx.allocate_ids("template", 1)
            template = _build_template(tx, tid, spec, self._clock(), None)
            tx.insert_templates([template])
            return template

    def get_template(self, tenant: str, template_id: int) -> Template:
        with self._store.transaction(tenant) as tx:
            found = tx.get_templates([template_id])
        if template_id not in found:
            raise TemplateNotFound(template_id)
        return found[template_id]

    def list_templates(self, tenant: str, f: Filter, page: PageRequest) -> Page:
        with self._store.transaction(tenant) as tx:
            items, total = tx.list_templates(f, page)
        return Page(items, page.page, page.page_size, total)

    def update_template(self, tenant: str, template_id: int, spec: TemplateSpec) -> tuple[Template, list[str]]:
        """Replace a template's label and attributes; every device built from it gets an ``update`` event.
        Refused, changing nothing, when a device would end up with two attributes of one label."""
        with self._store.transaction(tenant) as tx:
            old = tx.get_templates([template_id], lock="update").get(template_id)
            if old is None:
                raise TemplateNotFound(template_id)
            clashes = tx.label_clashes(template_id, [a.label for a in spec.attrs])
            if clashes:
                label, other, device, n = clashes[0]
                raise Invalid(
                    f"a device can not have repeated attributes: attribute {label!r} would be in templates "
                    f"{template_id} and {other} of {n} device(s) (e.g. {device}); the template was not changed",
                    label=label,
                    templates=[template_id, other],
                    devices=n,
                )
            now = self._clock()
            new = _build_template(tx, template_id, spec, old.created, now, old)
            tx.update_template(old, new)
            affected = tx.device_ids_using(template_id)
            for start in range(0, len(affected), 2000):
                self._emit(tx, "update", tx.get_devices(affected[start : start + 2000]))
            return new, affected

    def delete_template(self, tenant: str, template_id: int) -> Template:
        with self._store.transaction(tenant) as tx:
            found = tx.get_templates([template_id], lock="update")
            if template_id not in found:
                raise TemplateNotFound(template_id)
            _refuse_in_use(tx, [template_id])
            tx.delete_templates([template_id])
            return found[template_id]

    def delete_all_templates(self, tenant: str) -> list[Template]:
        with self._store.transaction(tenant) as tx:
            templates, _ = tx.list_templates(Filter(), None)
            ids = [t.id for t in templates]
            if ids:
                tx.get_templates(ids, lock="update")
                _refuse_in_use(tx, ids)
                tx.delete_templates(ids)
            return templates

    # -- devices -------------------------------------------------------------------------------------------
    def create_devices(self, tenant: str, spec: DeviceSpec, count: int = 1) -> list[Device]:
        if not 1 <= count <= MAX_COUNT:
            raise Invalid(f"count must be between 1 and {MAX_COUNT}")
        if spec.id is not None and count > 1:
            raise Invalid("a device id can only be given when creating a single device")
        with self._store.transaction(tenant) as tx:
            templates = _templates_of(tx, spec.templates)
            overrides = resolve_overrides(templates, spec.overrides or ())
            now = self._clock()
            labels = [f"{spec.label}_{i}" for i in range(count)] if count > 1 else [spec.label]
            disabled = bool(spec.disabled)
            if spec.id is not None:
                device = Device(spec.id, labels[0], now, templates, overrides, disabled=disabled)
                if tx.insert_devices([device]):
                    raise Conflict(f"a device with id {spec.id} already exists", id=spec.id)
                created = [device]
            else:
                created = self._insert_with_new_ids(tx, labels, templates, overrides, now, disabled)
            self._emit(tx, "create", created)
        return created

    def _insert_with_new_ids(
        self,
        tx: Tx,
        labels: list[str],
        templates: tuple[Template, ...],
        overrides: dict[int, Any],
        now: datetime,
        disabled: bool,
    ) -> list[Device]:
        wanted = {i: Device("", label, now, templates, overrides, disabled=disabled) for i, label in enumerate(labels)}
        done: dict[int, Device] = {}
        for _ in range(ID_ATTEMPTS):
            batch: dict[str, int] = {}
            for index in wanted:
                new_id = self._new_id()
                while new_id in batch:
                    new_id = self._new_id()
                batch[new_id] = index
            devices = [replace(wanted[index], id=new_id) for new_id, index in batch.items()]
            taken = tx.insert_devices(devices)
            for d in devices:
                if d.id not in taken:
                    done[batch[d.id]] = d
                    del wanted[batch[d.id]]
            if not wanted:
                return [done[i] for i in sorted(done)]
        raise Unavailable("Failed to generate unique device_id; try again")

    def get_device(self, tenant: str, device_id: str) -> Device:
        with self._store.transaction(tenant) as tx:
            device = tx.get_device(device_id)
        if device is None:
            raise NotFound(f"No such device: {device_id}")
        return device

    def list_devices(self, tenant: str, f: Filter, page: PageRequest) -> Page:
        with self._store.transaction(tenant) as tx:
            items, total = tx.list_devices(f, page)
        return Page(items, page.page, page.page_size, total)

    def list_device_ids(self, tenant: str, f: Filter, page: PageRequest) -> list[str]:
        with self._store.transaction(tenant) as tx:
            return tx.list_device_ids(f, page)

    def devices_of_template(self, tenant: str, template_id: int, page: PageRequest) -> Page:
        with self._store.transaction(tenant) as tx:
            if template_id not in tx.get_templates([template_id]):
                raise TemplateNotFound(template_id)
            items, total = tx.list_devices(Filter(template=template_id), page)
        return Page(items, page.page, page.page_size, total)

    def all_devices(self, tenant: str) -> list[Device]:
        with self._store.transaction(tenant) as tx:
            items, _ = tx.list_devices(Filter(), None)
        return items

    def update_device(self, tenant: str, device_id: str, spec: DeviceSpec) -> Device:
        """Replace a device's label and templates. Overrides: replaced by the body's ``attrs`` when given,
        otherwise kept for the attributes the device still has. ``disabled``: the body's when given, otherwise
        unchanged."""
        if spec.id is not None and spec.id != device_id:
            raise Invalid(f"the body's id {spec.id} is not the device's id {device_id}; ids cannot change")
        with self._store.transaction(tenant) as tx:
            old = _existing(tx, device_id)
            templates = _templates_of(tx, spec.templates)
            if spec.overrides is None:
                keep = {a.id for t in templates for a in t.attrs} | {
                    m.id for t in templates for a in t.attrs for m in a.metadata
                }
                overrides = {k: v for k, v in old.overrides.items() if k in keep}
            else:
                overrides = resolve_overrides(templates, spec.overrides)
            disabled = old.disabled if spec.disabled is None else spec.disabled
            device = Device(device_id, spec.label, old.created, templates, overrides, self._clock(), disabled)
            tx.update_device(device)
            self._emit(tx, "update", [device])
            return device

    def add_template(self, tenant: str, device_id: str, template_id: int) -> Device:
        with self._store.transaction(tenant) as tx:
            old = _existing(tx, device_id)
            if template_id in old.template_ids:
                return old
            templates = _templates_of(tx, (*old.template_ids, template_id))
            device = replace(old, templates=templates, updated=self._clock())
            tx.update_device(device)
            self._emit(tx, "update", [device])
            return device

    def remove_template(self, tenant: str, device_id: str, template_id: int) -> Device:
        with self._store.transaction(tenant) as tx:
            old = _existing(tx, device_id)
            if template_id not in old.template_ids:
                raise NotFound(f"device {device_id} is not built from template {template_id}")
            templates = tuple(t for t in old.templates if t.id != template_id)
            keep = {a.id for t in templates for a in t.attrs} | {
                m.id for t in templates for a in t.attrs for m in a.metadata
            }
            overrides = {k: v for k, v in old.overrides.items() if k in keep}
            device = replace(old, templates=templates, overrides=overrides, updated=self._clock())
            tx.update_device(device)
            self._emit(tx, "update", [device])
            return device

    def delete_device(self, tenant: str, device_id: str) -> Device:
        with self._store.transaction(tenant) as tx:
            device = _existing(tx, device_id)
            tx.delete_devices([device_id])
            self._emit_removed(tx, [device_id])
        return device

    def delete_all_devices(self, tenant: str) -> list[Device]:
        with self._store.transaction(tenant) as tx:
            devices, _ = tx.list_devices(Filter(), None)
            tx.delete_devices(None)
            self._emit_removed(tx, [d.id for d in devices])
        return devices

    def actuate(self, tenant: str, device_id: str, attrs: dict[str, Any]) -> None:
        with self._store.transaction(tenant) as tx:
            device = tx.get_device(device_id)
            if device is None:
                raise NotFound(f"No such device: {device_id}")
            actuators = device.actuators()
            offending = [label for label in attrs if label not in actuators]
            if offending:
                raise NotConfigurable(offending)
            event = DeviceEvent.configure(tenant, device_id, attrs, self._clock_ms())
            tx.add_events(topics.device_events(tenant), [(device_id, event.to_bytes())])

    # -- configuration import/export -----------------------------------------------------------------------
    def export(self, tenant: str) -> Configuration:
        with self._store.transaction(tenant) as tx:
            templates, _ = tx.list_templates(Filter(), None)
            devices, _ = tx.list_devices(Filter(), None)
        return Configuration(templates, devices)

    def import_configuration(self, tenant: str, config: Configuration) -> tuple[int, int]:
        """Replace all of the tenant's templates and devices, in one transaction. Devices that existed only
        before get ``remove`` events, devices in both get ``update``, new ones ``create``. The configuration
        replaced is kept as the tenant's newest import backup (see :meth:`undo_import`)."""
        with self._store.transaction(tenant) as tx:
            self._replace(tx, config)
        return len(config.templates), len(config.devices)

    def import_changes(self, tenant: str, config: Configuration) -> ImportChanges:
        """What :meth:`import_configuration` would change (a dry run: nothing is written)."""
        with self._store.transaction(tenant) as tx:
            templates, _ = tx.list_templates(Filter(), None)
            devices = set(tx.list_device_ids(Filter(), None))
        return ImportChanges(
            _changes({t.id for t in templates}, {t.id for t in config.templates}),
            _changes(devices, {d.id for d in config.devices}),
        )

    def previous_import(self, tenant: str) -> tuple[datetime, dict[str, Any]]:
        """The configuration the last import (or undo) replaced: (when, the export document); 404 when none."""
        with self._store.transaction(tenant) as tx:
            found = tx.latest_backup()
        if found is None:
            raise NotFound("there is no previous configuration: nothing was imported yet")
        return found

    def undo_import(self, tenant: str, parse: Callable[[dict[str, Any]], Configuration]) -> tuple[int, int]:
        """Restore the configuration the last import replaced, in one transaction and with the events of an
        import; what it replaces becomes the newest backup, so an undo can be undone. 404 when none."""
        with self._store.transaction(tenant) as tx:
            found = tx.latest_backup()
            if found is None:
                raise NotFound("there is no previous configuration to restore: nothing was imported yet")
            config = parse(found[1])
            self._replace(tx, config)
        return len(config.templates), len(config.devices)

    def _replace(self, tx: Tx, config: Configuration) -> None:
        old_templates, _ = tx.list_templates(Filter(), None)
        old_devices, _ = tx.list_devices(Filter(), None)
        tx.save_backup(Configuration(old_templates, old_devices).to_document(), BACKUPS_KEPT)
        before = {d.id for d in old_devices}
        after = {d.id for d in config.devices}
        tx.delete_devices(None)
        tx.delete_templates([t.id for t in old_templates])
        tx.insert_templates(config.templates)
        if tx.insert_devices(config.devices):
            raise Conflict("the configuration holds a device id twice")
        tx.raise_ids("template", max((t.id for t in config.templates), default=0))
        attr_ids = [a.id for t in config.templates for a in t.attrs]
        attr_ids += [m.id for t in config.templates for a in t.attrs for m in a.metadata]
        tx.raise_ids("attr", max(attr_ids, default=0))
        self._emit_removed(tx, sorted(before - after))
        self._emit(tx, "update", [d for d in config.devices if d.id in before])
        self._emit(tx, "create", [d for d in config.devices if d.id not in before])


# -- rules ---------------------------------------------------------------------------------------------------
def check_unique_attrs(templates: tuple[Template, ...]) -> None:
    """The templates of one device must not share an attribute label (400 naming the label and templates)."""
    seen: dict[str, int] = {}
    for t in templates:
        for a in t.attrs:
            if a.label in seen:
                raise Invalid(
                    f"a device can not have repeated attributes: {a.label!r} is in templates "
                    f"{seen[a.label]} and {t.id}",
                    label=a.label,
                    templates=[seen[a.label], t.id],
                )
            seen[a.label] = t.id


def _existing(tx: Tx, device_id: str) -> Device:
    device = tx.get_device(device_id, lock=True)
    if device is None:
        raise NotFound(f"No such device: {device_id}")
    return device


def _templates_of(tx: Tx, ids: Iterable[int]) -> tuple[Template, ...]:
    wanted = list(dict.fromkeys(ids))
    found = tx.get_templates(wanted, lock="share")
    missing = [t for t in wanted if t not in found]
    if missing:  # dojot: 404 naming the first one
        raise TemplateNotFound(missing[0])
    templates = tuple(found[t] for t in wanted)
    check_unique_attrs(templates)
    return templates


def _refuse_in_use(tx: Tx, template_ids: list[int]) -> None:
    """dojot's 400 while devices use a template; ``details`` names the first ten and counts them all."""
    count, sample = tx.template_users(template_ids)
    if count:
        raise TemplatesInUse(sample, count)


def _build_template(
    tx: Tx, tid: int, spec: TemplateSpec, created: datetime, updated: datetime | None, old: Template | None = None
) -> Template:
    """The template ``spec`` describes, with ids from the tenant's one counter of attributes and metadata.

    On an update, an attribute (or meta attribute) that carries the id of one it replaces, or else has its label
    and type (dojot's rule), keeps that id, its creation time and the devices' overrides of it; an attribute kept
    whose body has no ``metadata`` list keeps its metadata, as in dojot. New ones are numbered in the order of
    :func:`_dojot_id_order`."""
    now = updated or created
    olds = old.attrs if old else ()
    prevs = _matches(spec.attrs, olds)
    meta_prevs: list[list[Meta | None]] = [
        _matches(a.metadata, p.metadata) if p is not None else [None] * len(a.metadata)
        for a, p in zip(spec.attrs, prevs, strict=True)
    ]
    order = _dojot_id_order(spec.attrs, olds, prevs, meta_prevs)
    ids = dict(zip(order, tx.allocate_ids("attr", len(order)), strict=True))
    attrs: list[Attr] = []
    for i, (a, prev) in enumerate(zip(spec.attrs, prevs, strict=True)):
        metas: list[Meta] = []
        if prev is not None and a.keeps_metadata:
            metas = list(prev.metadata)
        for j, (m, pm) in enumerate(zip(a.metadata, meta_prevs[i], strict=True)):
            if pm is not None:
                metas.append(Meta(pm.id, m.label, m.type, m.value_type, pm.created, m.static_value, updated))
            else:
                metas.append(Meta(ids[(i, j)], m.label, m.type, m.value_type, now, m.static_value, None))
        if prev is None:
            attrs.append(Attr(ids[(i, None)], tid, a.label, a.type, a.value_type, now, a.static_value, tuple(metas)))
        else:
            attrs.append(
                Attr(prev.id, tid, a.label, a.type, a.value_type, prev.created, a.static_value, tuple(metas), updated)
            )
    return Template(tid, spec.label, created, tuple(attrs), updated)


def _dojot_id_order(
    specs: tuple[AttrSpec, ...],
    olds: tuple[Attr, ...],
    prevs: list[Attr | None],
    meta_prevs: list[list[Meta | None]],
) -> list[tuple[int, int | None]]:
    """The (attribute index, meta index or None for the attribute itself) of every new (meta) attribute, in the
    order dojot's device manager v0.8.0 numbers them (its SQLAlchemy session inserts in this order).

    On creation: every attribute in the body's order, then every meta attribute (by attribute, then in order).
    On an update dojot walks the old attributes (by ascending id): dropping one, or reading the metadata of one
    kept whose body has a ``metadata`` list, writes (numbers) the new metadata of the attributes kept before it;
    then the new metadata of the kept attribute is queued. At the end come the new attributes in the body's
    order, then the queued metadata still unnumbered, then the metadata of the new attributes."""
    spec_of = {p.id: i for i, p in enumerate(prevs) if p is not None}
    order: list[tuple[int, int | None]] = []
    queued: list[tuple[int, int | None]] = []
    for o in sorted(olds, key=lambda a: a.id):
        i = spec_of.get(o.id)
        if i is not None and specs[i].keeps_metadata:
            continue
        order += queued
        queued = [] if i is None else [(i, j) for j, pm in enumerate(meta_prevs[i]) if pm is None]
    new = [i for i, p in enumerate(prevs) if p is None]
    order += [(i, None) for i in new]
    order += queued
    order += [(i, j) for i in new for j in range(len(specs[i].metadata))]
    return order


_T = TypeVar("_T", Attr, Meta)


def _matches(specs: Iterable[AttrSpec | MetaSpec], olds: Iterable[_T]) -> list[_T | None]:
    """For each new (meta) attribute, the old one it replaces: the one with its id if given, else the one with
    its label and type; each old one is replaced at most once. None: it is new."""
    by_id = {o.id: o for o in olds}
    by_key = {(o.label, o.type): o for o in by_id.values()}
    used: set[int] = set()
    out: list[_T | None] = []
    for spec in specs:
        prev = by_id.get(spec.id) if spec.id is not None else None
        if prev is None or prev.id in used:
            prev = by_key.get((spec.label, spec.type))
        if prev is not None and prev.id not in used:
            used.add(prev.id)
            out.append(prev)
        else:
            out.append(None)
    return out


def resolve_overrides(templates: tuple[Template, ...], specs: Iterable[OverrideSpec]) -> dict[int, Any]:
    """dojot's override list -> attr (or meta) id -> value. A value equal to the template's is no override (a client
    that sends every attribute back, as dojot's GUI does, must not freeze the template's values on the device);
    an attribute named twice is 400, as in dojot."""
    out: dict[int, Any] = {}
    by_id = {t.id: t for t in templates}
    seen: set[int] = set()
    for spec in specs:
        if spec.template is not None:
            if spec.template not in by_id:
                raise Invalid(f"Unknown template {spec.template} in attr list (the device is not built from it)")
            scope: list[Attr] = list(by_id[spec.template].attrs)
        else:
            scope = [a for t in templates for a in t.attrs]
        attr = next(
            (a for a in scope if (a.id == spec.ref if isinstance(spec.ref, int) else a.label == spec.ref)), None
        )
        if attr is None:
            raise Invalid(f"Unknown attribute {spec.ref} in override list (not an attribute of the device's templates)")
        if attr.id in seen:
            raise Invalid("a device can not have repeated attributes", attr=attr.label)
        seen.add(attr.id)
        if spec.static_value is not None and spec.static_value != attr.static_value:
            out[attr.id] = spec.static_value
        for ref, value in spec.metadata:
            meta = next((m for m in attr.metadata if ref in (m.id, m.label)), None)
            if meta is None:
                raise Invalid(f"Unknown metadata attribute {ref} in override list (attribute {attr.label!r})")
            if value is not None and value != meta.static_value:
                out[meta.id] = value
    return out
