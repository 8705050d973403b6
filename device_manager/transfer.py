"""Configuration export and import documents (dojot's Data Manager ``/export`` and ``/import``). No I/O.

The document is ``{"templates": [<template>...], "devices": [<device>...]}`` with the shapes the REST API returns;
ids are kept, so devices keep their identities (and their MQTT topics and certificates) across an import.
Keys for configuration that other services will own (``flows``, ``flowRemoteNodes``, ``cronJobs``) are
accepted only when empty, so an import never silently drops something.

An import replaces everything, so the whole document is checked before anything changes: both lists are
required, unknown keys are refused (at the top and in every entry; the fields export writes are known), and
the answer lists every problem found (:class:`InvalidImport`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from device_manager.models import (
    Attr,
    Device,
    DeviceSpec,
    Meta,
    MissingLabel,
    Template,
    TemplateSpec,
    parse_device_id,
    template_id,
)
from device_manager.service import Configuration, check_unique_attrs, resolve_overrides
from ondas.errors import Invalid

NOT_YET = ("flows", "flowRemoteNodes", "cronJobs")
REQUIRED = ("templates", "devices")
MAX_ITEMS = 200_000
MAX_PROBLEMS = 100  # listed in one answer; the rest are counted
BOM = b"\xef\xbb\xbf"

# The keys an entry may have: what the REST API accepts plus what export writes (so an export re-imports).
TEMPLATE_KEYS = frozenset({"id", "label", "created", "updated", "attrs", "data_attrs", "config_attrs"})
ATTR_KEYS = frozenset(
    {"id", "template_id", "label", "type", "value_type", "created", "updated", "static_value", "metadata"}
)
META_KEYS = frozenset({"id", "label", "type", "value_type", "created", "updated", "static_value"})
DEVICE_KEYS = frozenset({"id", "label", "created", "updated", "templates", "attrs", "disabled"})
DEVICE_ATTR_KEYS = ATTR_KEYS | {"is_static_overridden"}
DEVICE_META_KEYS = META_KEYS | {"is_static_overridden"}


class InvalidImport(Invalid):
    """400 for a refused import document: ``details.problems`` lists every problem found (dojot's ``status`` too)."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
        super().__init__("the import document is not valid; nothing was changed", problems=shown)
        self.problems = shown

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": self.status}


def render(config: Configuration) -> dict[str, Any]:
    return config.to_document()


def check_body(raw: bytes) -> None:
    """Refuse, before it is parsed, a body that cannot be an import document: none, or one with a BOM."""
    if not raw:
        raise InvalidImport(["the request needs a JSON body: the document /export returns"])
    if raw.startswith(BOM):
        raise InvalidImport(["the body starts with a UTF-8 byte-order mark (BOM); send the JSON without it"])


def body_problem(raw: bytes, refusal: str) -> str:
    """Why the platform's JSON reader refused ``raw`` (its message is ``refusal``), as precisely as can be
    said: where the JSON breaks, and whether the document looks truncated."""
    try:
        json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        text = raw.decode("utf-8")
        at = f"{exc.msg}: line {exc.lineno}, column {exc.colno} (character {exc.pos})"
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated"):
            at = f"it ends before the document does (truncated?): {at}"
        return f"the body is not valid JSON: {at}"
    except UnicodeDecodeError as exc:
        return f"the body is not UTF-8 text (byte {exc.start})"
    except ValueError as exc:
        return f"the body is not valid JSON: {exc}"
    except RecursionError:
        pass
    return refusal


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _time(raw: object, where: str, problems: list[str]) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            value = None
        if value is not None and value.tzinfo is not None:
            return value
    problems.append(f"{where}: must be an ISO 8601 timestamp with a UTC offset, as export writes it")
    return None


def _unknown(entry: dict[str, Any], allowed: frozenset[str], where: str, problems: list[str]) -> None:
    extra = sorted(k for k in entry if k not in allowed)
    if extra:
        problems.append(f"{where}: unknown key(s) {', '.join(map(repr, extra))}")


def _prefixed(where: str, exc: Invalid) -> str:
    if isinstance(exc, MissingLabel):
        return f"{where}.{exc.where}: {exc.message}"
    message = exc.message
    sep = "." if message.startswith(("attrs[", "data_attrs", "config_attrs")) else ": "
    return f"{where}{sep}{message}"


def parse_configuration(raw: dict[str, Any], now: datetime) -> Configuration:
    """The configuration the document describes; :class:`InvalidImport` listing every problem otherwise."""
    problems: list[str] = []
    lists: dict[str, list[Any]] = {}
    for key in REQUIRED:
        if key not in raw:
            problems.append(f"{key}: required (a list; [] for none)")
        elif not isinstance(raw[key], list):
            problems.append(f"{key}: must be a list")
        elif len(raw[key]) > MAX_ITEMS:
            problems.append(f"{key}: has more than {MAX_ITEMS} entries")
        else:
            lists[key] = raw[key]
    for key in NOT_YET:
        if key in raw and raw[key] not in (None, []):
            problems.append(f"{key} cannot be imported by this version; remove them (or leave the list empty)")
    extra = sorted(k for k in raw if k not in REQUIRED and k not in NOT_YET)
    if extra:
        problems.append(
            f"unknown top-level key(s) {', '.join(map(repr, extra))}; the document has templates and devices"
        )
    templates, given = _templates(lists.get("templates", []), now, problems)
    devices = _devices(lists.get("devices", []), {t.id: t for t in templates}, given, now, problems)
    if problems:
        raise InvalidImport(problems)
    return Configuration(templates, devices)


def _check_attr_keys(entry: dict[str, Any], where: str, problems: list[str]) -> None:
    for key in ("attrs", "data_attrs", "config_attrs"):
        _check_attr_entries(entry.get(key), f"{where}.{key}", problems, device=False)


def _check_attr_entries(attrs: object, prefix: str, problems: list[str], device: bool) -> None:
    """Unknown keys and bad timestamps in a list of attribute entries (their other fields are parsed later)."""
    if not isinstance(attrs, list):
        return
    for j, a in enumerate(attrs):
        if not isinstance(a, dict):
            continue
        awhere = f"{prefix}[{j}]"
        _unknown(a, DEVICE_ATTR_KEYS if device else ATTR_KEYS, awhere, problems)
        for field in ("created", "updated"):
            _time(a.get(field), f"{awhere}.{field}", problems)
        metas = a.get("metadata")
        if isinstance(metas, list):
            for k, m in enumerate(metas):
                if isinstance(m, dict):
                    mwhere = f"{awhere}.metadata[{k}]"
                    _unknown(m, DEVICE_META_KEYS if device else META_KEYS, mwhere, problems)
                    for field in ("created", "updated"):
                        _time(m.get(field), f"{mwhere}.{field}", problems)


def _templates(raw: list[Any], now: datetime, problems: list[str]) -> tuple[list[Template], set[int]]:
    """The valid templates and the ids of every template entry (valid or not, so devices using an invalid one
    are not also reported)."""
    parsed: list[tuple[int, TemplateSpec, datetime, datetime | None, dict[str, Any]]] = []
    seen: set[int] = set()
    for i, entry in enumerate(raw):
        where = f"templates[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a template object")
            continue
        _unknown(entry, TEMPLATE_KEYS, where, problems)
        tid = template_id(entry.get("id"))
        if tid is None:
            problems.append(f"{where}.id: must be the template's id (a positive integer)")
        elif tid in seen:
            problems.append(f"{where}: template id {tid} appears twice in templates")
            tid = None
        else:
            seen.add(tid)
        before = len(problems)
        _check_attr_keys(entry, where, problems)
        created = _time(entry.get("created"), f"{where}.created", problems) or now
        updated = _time(entry.get("updated"), f"{where}.updated", problems)
        try:
            spec = TemplateSpec.parse(entry)
        except Invalid as exc:
            problems.append(_prefixed(where, exc))
            continue
        if tid is not None and len(problems) == before:
            parsed.append((tid, spec, created, updated, entry))
    given = [a.id for _, s, _, _, _ in parsed for a in s.attrs if a.id is not None]
    given += [m.id for _, s, _, _, _ in parsed for a in s.attrs for m in a.metadata if m.id is not None]
    if len(given) != len(set(given)):
        repeated = sorted({x for x in given if given.count(x) > 1})[:10]
        problems.append(
            "attribute ids must be unique across the imported templates (metadata included); repeated: "
            + ", ".join(map(str, repeated))
        )
    next_id = max(given, default=0)

    def fresh() -> int:
        nonlocal next_id
        next_id += 1
        return next_id

    out: list[Template] = []
    for tid, spec, created, updated, entry in parsed:
        raw_attrs = entry.get("attrs")
        if not isinstance(raw_attrs, list):  # the split form, as TemplateSpec reads it
            raw_attrs = [a for k in ("data_attrs", "config_attrs") if isinstance(entry.get(k), list) for a in entry[k]]
        times = [_entry_times(a, now, created) for a in raw_attrs]
        # Ids the document leaves out are given as on creation: the attributes first, then their metadata.
        attr_ids = [a.id if a.id is not None else fresh() for a in spec.attrs]
        meta_ids = [[m.id if m.id is not None else fresh() for m in a.metadata] for a in spec.attrs]
        attrs = []
        for i, a in enumerate(spec.attrs):
            a_created, a_updated, meta_times = times[i] if i < len(times) else (created, None, [])
            metas = []
            for j, m in enumerate(a.metadata):
                m_created, m_updated = meta_times[j] if j < len(meta_times) else (a_created, None)
                metas.append(Meta(meta_ids[i][j], m.label, m.type, m.value_type, m_created, m.static_value, m_updated))
            attrs.append(
                Attr(
                    attr_ids[i], tid, a.label, a.type, a.value_type, a_created, a.static_value, tuple(metas), a_updated
                )
            )
        out.append(Template(tid, spec.label, created, tuple(attrs), updated))
    return out, seen


def _entry_times(
    raw: object, now: datetime, default: datetime
) -> tuple[datetime, datetime | None, list[tuple[datetime, datetime | None]]]:
    """An attribute entry's created/updated (already checked) and its metadata's."""
    if not isinstance(raw, dict):
        return default, None, []
    ignore: list[str] = []
    created = _time(raw.get("created"), "", ignore) or default
    updated = _time(raw.get("updated"), "", ignore)
    metas = raw.get("metadata")
    if not isinstance(metas, list):
        metas = []
    meta_times = [
        (
            (_time(m.get("created"), "", ignore) or created, _time(m.get("updated"), "", ignore))
            if isinstance(m, dict)
            else (created, None)
        )
        for m in metas
    ]
    return created, updated, meta_times


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


def _check_device_attr_keys(entry: dict[str, Any], where: str, problems: list[str]) -> None:
    attrs = entry.get("attrs")
    if isinstance(attrs, dict):
        for key, group in attrs.items():
            _check_attr_entries(group, f"{where}.attrs[{key!r}]", problems, device=True)
    else:
        _check_attr_entries(attrs, f"{where}.attrs", problems, device=True)


def _devices(
    raw: list[Any], templates: dict[int, Template], given: set[int], now: datetime, problems: list[str]
) -> list[Device]:
    out: list[Device] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"devices[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a device object")
            continue
        before = len(problems)
        _unknown(entry, DEVICE_KEYS, where, problems)
        _check_device_attr_keys(entry, where, problems)
        created = _time(entry.get("created"), f"{where}.created", problems) or now
        updated = _time(entry.get("updated"), f"{where}.updated", problems)
        if entry.get("id") is None:
            problems.append(f"{where}.id is required: the device's id")
            continue
        try:
            device_id = parse_device_id(entry.get("id"))
            spec = DeviceSpec.parse({**entry, "attrs": _only_overridden(entry.get("attrs"))})
        except Invalid as exc:
            problems.append(_prefixed(where, exc))
            continue
        if device_id in seen:
            problems.append(f"{where}: device id {device_id} appears twice in devices")
            continue
        seen.add(device_id)
        missing = [t for t in spec.templates if t not in given]
        if missing:
            problems.append(f"{where} ({device_id}) uses template {missing[0]}, which is not in templates")
            continue
        if any(t not in templates for t in spec.templates):
            continue  # a template it uses is invalid (reported with the template)
        chosen = tuple(templates[t] for t in spec.templates)
        try:
            check_unique_attrs(chosen)
            overrides = resolve_overrides(chosen, spec.overrides or ())
        except Invalid as exc:
            problems.append(f"{where} ({device_id}): {exc.message}")
            continue
        if len(problems) == before:
            out.append(Device(device_id, spec.label, created, chosen, overrides, updated, bool(spec.disabled)))
    return out
