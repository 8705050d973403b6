"""Configuration export and import documents (dojot's Data Manager ``/export`` and ``/import``). No I/O.

The document is ``{"templates": [<template>...], "devices": [<device>...]}`` with the shapes the REST API returns;
ids are kept, so devices keep their identities (and their MQTT topics and certificates) across an import.
Keys for configuration that other services will own (``flows``, ``flowRemoteNodes``, ``cronJobs``) are
accepted only when empty, so an import never silently drops something.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from device_manager.models import (
    Attr,
    Device,
    DeviceSpec,
    Meta,
    Template,
    TemplateSpec,
    parse_device_id,
    template_id,
)
from device_manager.service import Configuration, check_unique_attrs, resolve_overrides
from ondas.errors import Invalid

NOT_YET = ("flows", "flowRemoteNodes", "cronJobs")
MAX_ITEMS = 200_000


def render(config: Configuration) -> dict[str, Any]:
    return {
        "templates": [t.to_dict("single") for t in config.templates],
        "devices": [d.to_dict() for d in config.devices],
    }


def _time(raw: object, default: datetime) -> datetime:
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            return default
        return value if value.tzinfo is not None else default
    return default


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"{key} must be a list")
    if len(value) > MAX_ITEMS:
        raise Invalid(f"{key} has more than {MAX_ITEMS} entries")
    return value


def parse_configuration(raw: dict[str, Any], now: datetime) -> Configuration:
    for key in NOT_YET:
        if raw.get(key):
            raise Invalid(f"{key} cannot be imported by this version; remove them (or leave the list empty)")
    templates = _templates(_list(raw, "templates"), now)
    devices = _devices(_list(raw, "devices"), {t.id: t for t in templates}, now)
    return Configuration(templates, devices)


def _templates(raw: list[Any], now: datetime) -> list[Template]:
    parsed: list[tuple[int, TemplateSpec, datetime]] = []
    seen: set[int] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise Invalid(f"templates[{i}] must be a template object")
        tid = template_id(entry.get("id"))
        if tid is None:
            raise Invalid(f"templates[{i}].id must be the template's id (a positive integer)")
        if tid in seen:
            raise Invalid(f"template id {tid} appears twice in templates")
        seen.add(tid)
        try:
            spec = TemplateSpec.parse(entry)
        except Invalid as exc:
            raise Invalid(f"templates[{i}]: {exc.message}", **exc.details) from exc
        parsed.append((tid, spec, _time(entry.get("created"), now)))
    given = [a.id for _, s, _ in parsed for a in s.attrs if a.id is not None]
    given += [m.id for _, s, _ in parsed for a in s.attrs for m in a.metadata if m.id is not None]
    if len(given) != len(set(given)):
        raise Invalid("attribute ids must be unique across the imported templates (metadata included)")
    next_id = max(given, default=0)

    def fresh() -> int:
        nonlocal next_id
        next_id += 1
        return next_id

    out: list[Template] = []
    for tid, spec, created in parsed:
        # Ids the document leaves out are given as on creation: the attributes first, then their metadata.
        attr_ids = [a.id if a.id is not None else fresh() for a in spec.attrs]
        meta_ids = [[m.id if m.id is not None else fresh() for m in a.metadata] for a in spec.attrs]
        attrs = tuple(
            Attr(
                attr_ids[i],
                tid,
                a.label,
                a.type,
                a.value_type,
                created,
                a.static_value,
                tuple(
                    Meta(meta_ids[i][j], m.label, m.type, m.value_type, created, m.static_value)
                    for j, m in enumerate(a.metadata)
                ),
            )
            for i, a in enumerate(spec.attrs)
        )
        out.append(Template(tid, spec.label, created, attrs))
    return out


def _only_overridden(attrs: object) -> object:
    """Keep the entries of a device's ``attrs`` that are overrides (export marks them ``is_static_overridden``)."""
    if not isinstance(attrs, dict):
        return attrs
    kept: dict[str, Any] = {}
    for key, entries in attrs.items():
        if not isinstance(entries, list):
            kept[key] = entries
            continue
        out = []
        for e in entries:
            if not isinstance(e, dict):
                out.append(e)
                continue
            entry = dict(e)
            if entry.get("is_static_overridden") is False:
                entry.pop("static_value", None)
            meta = entry.get("metadata")
            if isinstance(meta, list):
                entry["metadata"] = [
                    {k: v for k, v in m.items() if not (k == "static_value" and m.get("is_static_overridden") is False)}
                    if isinstance(m, dict)
                    else m
                    for m in meta
                ]
            out.append(entry)
        kept[key] = out
    return kept


def _devices(raw: list[Any], templates: dict[int, Template], now: datetime) -> list[Device]:
    out: list[Device] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise Invalid(f"devices[{i}] must be a device object")
        if entry.get("id") is None:
            raise Invalid(f"devices[{i}].id is required: the device's id")
        try:
            device_id = parse_device_id(entry.get("id"))
            spec = DeviceSpec.parse({**entry, "attrs": _only_overridden(entry.get("attrs"))})
        except Invalid as exc:
            raise Invalid(f"devices[{i}]: {exc.message}", **exc.details) from exc
        if device_id in seen:
            raise Invalid(f"device id {device_id} appears twice in devices")
        seen.add(device_id)
        missing = [t for t in spec.templates if t not in templates]
        if missing:
            raise Invalid(f"devices[{i}] ({device_id}) uses template {missing[0]}, which is not in templates")
        chosen = tuple(templates[t] for t in spec.templates)
        try:
            check_unique_attrs(chosen)
            overrides = resolve_overrides(chosen, spec.overrides or ())
        except Invalid as exc:
            raise Invalid(f"devices[{i}] ({device_id}): {exc.message}", **exc.details) from exc
        created = _time(entry.get("created"), now)
        out.append(Device(device_id, spec.label, created, chosen, overrides, disabled=bool(spec.disabled)))
    return out
