"""Domain types of the device manager, the parsing of requests into them and their dojot JSON shapes.

No I/O here. Shapes follow dojot v0.8.1 device-manager (apiary.apib, README and the tutorial).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ondas.errors import Invalid, NotFound

ATTR_TYPES = ("dynamic", "static", "actuator", "meta")  # of attributes; metadata take any type (as dojot)
# "geopoint" is how dojot's own examples spell geo:point; "boolean" and "json" are spellings its GUI used.
VALUE_TYPES = ("integer", "float", "bool", "boolean", "string", "geo:point", "geopoint", "object", "json")
CONFIG_TYPES = frozenset({"meta"})
DEVICE_ID_RE = re.compile(r"^[0-9a-f]{2,6}$")
LOOKUP_ID_RE = re.compile(r"^[0-9a-fA-F]{1,16}$")
MAX_LABEL = 128
MAX_META_TYPE = 32  # dojot's attrs.type column is varchar(32)
MAX_COUNT = 1000
MAX_PAGE_SIZE = 1000
MAX_ATTRS = 1000
ATTR_FORMATS = ("both", "single", "split")
SORT_FIELDS = ("id", "label", "created", "updated")

AttrFormat = Literal["both", "single", "split"]


def iso(ts: datetime) -> str:
    """dojot's timestamp rendering: ``2018-01-25T12:30:42.164695+00:00``."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


# -- errors with dojot's bodies ---------------------------------------------------------------------------
# dojot answers {"message": ..., "status": <code>}; these add only Ondas' "error" (and, for templates in use, the
# "details" Ondas gave before).
IN_USE = "Templates cannot be removed as they are being used by devices"
MISSING_LABEL = "missing label attribute"


class TemplateNotFound(NotFound):
    """404 ``No such template: <id>``, as dojot (also for the templates of ``POST``/``PUT /device``)."""

    def __init__(self, template: object) -> None:
        super().__init__(f"No such template: {template}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": self.status}


class TemplatesInUse(Invalid):
    """400 with dojot's exact message; ``details`` names the devices (the first ten) and counts them."""

    def __init__(self, devices: list[str], device_count: int) -> None:
        super().__init__(IN_USE, devices=devices, device_count=device_count)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": self.status}


class MissingLabel(Invalid):
    """400 for a device's attribute override without ``label``; dojot's message is a one-element list."""

    def __init__(self, where: str) -> None:
        super().__init__(MISSING_LABEL)
        self.where = where  # for logs; dojot's body does not say which entry

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "message": [MISSING_LABEL], "status": self.status}


# -- stored entities ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Meta:
    """A meta attribute (metadata) of an attribute, e.g. the unit of a temperature."""

    id: int
    label: str
    type: str
    value_type: str
    created: datetime
    static_value: Any = None
    updated: datetime | None = None

    def to_dict(self, override: Any = None, overridden: bool | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "label": self.label,
            "type": self.type,
            "value_type": self.value_type,
            "created": iso(self.created),
        }
        value = override if overridden else self.static_value
        if value is not None:
            out["static_value"] = value
        if self.updated is not None:
            out["updated"] = iso(self.updated)
        if overridden is not None:
            out["is_static_overridden"] = overridden
        return out


@dataclass(frozen=True)
class Attr:
    id: int
    template_id: int
    label: str
    type: str
    value_type: str
    created: datetime
    static_value: Any = None
    metadata: tuple[Meta, ...] = ()
    updated: datetime | None = None

    def to_dict(self, overrides: dict[int, Any] | None = None) -> dict[str, Any]:
        """The template's view of the attribute; with ``overrides`` (attr or meta id -> value), a device's."""
        out: dict[str, Any] = {
            "id": self.id,
            "template_id": str(self.template_id),
            "label": self.label,
            "type": self.type,
            "value_type": self.value_type,
            "created": iso(self.created),
        }
        overridden = None if overrides is None else self.id in overrides
        value = overrides[self.id] if overrides is not None and overridden else self.static_value
        if value is not None:
            out["static_value"] = value
        if self.updated is not None:
            out["updated"] = iso(self.updated)
        if overridden is not None:
            out["is_static_overridden"] = overridden
        if self.metadata:
            out["metadata"] = [
                m.to_dict() if overrides is None else m.to_dict(overrides.get(m.id), m.id in overrides)
                for m in self.metadata
            ]
        return out


@dataclass(frozen=True)
class Template:
    id: int
    label: str
    created: datetime
    attrs: tuple[Attr, ...] = ()
    updated: datetime | None = None

    def labels(self) -> set[str]:
        return {a.label for a in self.attrs}

    def to_dict(self, attr_format: AttrFormat = "both") -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "label": self.label, "created": iso(self.created)}
        if self.updated is not None:
            out["updated"] = iso(self.updated)
        if attr_format in ("both", "single"):
            out["attrs"] = [a.to_dict() for a in self.attrs]
        if attr_format in ("both", "split"):
            out["data_attrs"] = [a.to_dict() for a in self.attrs if a.type not in CONFIG_TYPES]
            out["config_attrs"] = [a.to_dict() for a in self.attrs if a.type in CONFIG_TYPES]
        return out


@dataclass(frozen=True)
class Device:
    id: str
    label: str
    created: datetime
    templates: tuple[Template, ...] = ()
    overrides: dict[int, Any] = field(default_factory=dict)  # attr or meta id -> static value
    updated: datetime | None = None
    disabled: bool = False  # set by the tenant; agents learn it from the device events

    @property
    def attrs(self) -> list[Attr]:
        return [a for t in self.templates for a in t.attrs]

    @property
    def template_ids(self) -> list[int]:
        return [t.id for t in self.templates]

    def actuators(self) -> set[str]:
        return {a.label for a in self.attrs if a.type == "actuator"}

    def to_dict(self) -> dict[str, Any]:
        """The device as dojot renders it in REST answers and in ``create``/``update`` events."""
        out: dict[str, Any] = {
            "id": self.id,
            "label": self.label,
            "created": iso(self.created),
            "templates": [t.id for t in self.templates],
            "attrs": {str(t.id): [a.to_dict(self.overrides) for a in t.attrs] for t in self.templates},
            "disabled": self.disabled,
        }
        if self.updated is not None:
            out["updated"] = iso(self.updated)
        return out


@dataclass(frozen=True)
class Page:
    """One page of a listing. ``total`` counts pages, as dojot's pagination does; ``total_items`` counts items."""

    items: list[Any]
    page: int
    page_size: int
    total_items: int

    @property
    def total_pages(self) -> int:
        return -(-self.total_items // self.page_size)

    @property
    def has_next(self) -> bool:
        return self.page < self.total_pages

    def pagination(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "total": self.total_pages,
            "has_next": self.has_next,
            "next_page": self.page + 1 if self.has_next else None,
            "total_items": self.total_items,
        }


# -- requests ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetaSpec:
    label: str
    type: str
    value_type: str
    static_value: Any = None
    id: int | None = None


@dataclass(frozen=True)
class AttrSpec:
    label: str
    type: str
    value_type: str
    static_value: Any = None
    metadata: tuple[MetaSpec, ...] = ()
    id: int | None = None  # on updates: keep this attribute's id (and the devices' overrides of it)
    # The body had a "metadata" list. On updates, as in dojot, an attribute without one keeps its metadata.
    metadata_given: bool = False

    @property
    def keeps_metadata(self) -> bool:
        return not self.metadata_given and not self.metadata


@dataclass(frozen=True)
class TemplateSpec:
    label: str
    attrs: tuple[AttrSpec, ...] = ()

    @classmethod
    def parse(cls, body: dict[str, Any]) -> TemplateSpec:
        label = _label(body.get("label"), "label")
        raw_attrs = _attr_list(body)
        if len(raw_attrs) > MAX_ATTRS:
            raise Invalid(f"a template has at most {MAX_ATTRS} attributes")
        attrs = tuple(_attr(raw, i) for i, raw in enumerate(raw_attrs))
        _unique([a.label for a in attrs], "attribute labels must be unique in a template")
        return cls(label=label, attrs=attrs)


@dataclass(frozen=True)
class OverrideSpec:
    """A device's own static value for one attribute (``ref`` = attribute id or label) and/or its metadata."""

    ref: int | str
    template: int | None = None
    static_value: Any = None
    metadata: tuple[tuple[int | str, Any], ...] = ()


@dataclass(frozen=True)
class DeviceSpec:
    label: str
    templates: tuple[int, ...] = ()
    id: str | None = None
    overrides: tuple[OverrideSpec, ...] | None = None  # None: not given
    disabled: bool | None = None  # None: not given (false on create, unchanged on update)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DeviceSpec:
        label = _label(body.get("label"), "label")
        raw = body.get("templates")
        if not isinstance(raw, list):
            raise Invalid('templates is required: a list of template ids, e.g. "templates": [1]')
        templates: list[int] = []
        for t in raw:
            tid = template_id(t)
            if tid is None:
                raise Invalid(f"templates must hold template ids (positive integers), got {t!r}")
            if tid not in templates:
                templates.append(tid)
        device_id = body.get("id")
        if device_id is not None:
            device_id = parse_device_id(device_id)
        overrides = _overrides(body["attrs"]) if "attrs" in body and body["attrs"] is not None else None
        disabled = _flag(body["disabled"], "disabled") if "disabled" in body else None
        return cls(label=label, templates=tuple(templates), id=device_id, overrides=overrides, disabled=disabled)


def parse_device_id(raw: object) -> str:
    if not isinstance(raw, str) or not DEVICE_ID_RE.match(raw.lower()):
        raise Invalid("Device ID must be 2-6 characters and must be hexadecimal (0-9,a-f,A-F)")
    return raw.lower()


def lookup_id(raw: str) -> str | None:
    """A device id from a URL, lower-cased; None when it cannot be one (then no device has it)."""
    return raw.lower() if LOOKUP_ID_RE.match(raw) else None


@dataclass(frozen=True)
class PageRequest:
    page: int = 1
    page_size: int = 20
    max_page_size: int = MAX_PAGE_SIZE

    def __post_init__(self) -> None:
        if self.page < 1:
            raise Invalid("Page numbers must be greater than 1")
        if self.page_size < 1:
            raise Invalid("At least one entry per page is mandatory")
        if self.page_size > self.max_page_size:
            raise Invalid(f"page_size must be at most {self.max_page_size}")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


@dataclass(frozen=True)
class Filter:
    """What a listing keeps: every given condition must hold."""

    label: str | None = None  # substring of the label, case-insensitive
    attrs: tuple[tuple[str, str], ...] = ()  # (attribute label, static value as text), overrides included
    attr_type: str | None = None  # some attribute has this value_type (or type)
    template: int | None = None  # devices only: built from this template
    sort: str | None = None  # one of SORT_FIELDS
    descending: bool = False
    disabled: bool | None = None  # devices only: only disabled (True) or only enabled (False) devices

    @classmethod
    def parse(
        cls,
        *,
        label: str | None,
        attrs: list[str],
        attr_type: str | None,
        template: str | None,
        sort_by: str | None,
        disabled: str | None = None,
    ) -> Filter:
        pairs: list[tuple[str, str]] = []
        for raw in attrs:
            name, sep, value = raw.partition("=")
            if not sep or not name:
                raise Invalid(f"attr must be <attribute label>=<value>, e.g. attr=serial=ab12; got {raw!r}")
            pairs.append((name, value))
        tid = None
        if template is not None:
            tid = template_id(template)
            if tid is None:
                raise Invalid(f"template must be a template id (a positive integer), got {template!r}")
        sort, descending = None, False
        if sort_by:
            direction, sep, name = sort_by.partition(":")
            if not sep:
                direction, name = "asc", sort_by
            if direction not in ("asc", "desc") or name not in SORT_FIELDS:
                raise Invalid(
                    f"sortBy must be one of {', '.join(SORT_FIELDS)}, optionally prefixed by asc: or desc:; "
                    f"got {sort_by!r}"
                )
            sort, descending = name, direction == "desc"
        return cls(
            label=label or None,
            attrs=tuple(pairs),
            attr_type=attr_type or None,
            template=tid,
            sort=sort,
            descending=descending,
            disabled=None if not disabled else parse_bool(disabled, "disabled"),
        )


def parse_actuation(body: dict[str, Any]) -> dict[str, Any]:
    attrs = body.get("attrs")
    if not isinstance(attrs, dict) or not attrs:
        raise Invalid('the body must be {"attrs": {"<actuator label>": <value>, ...}} with at least one attribute')
    return attrs


def parse_attr_format(raw: str | None) -> AttrFormat:
    formats: dict[str, AttrFormat] = {"both": "both", "single": "single", "split": "split"}
    if not raw:
        return "both"
    if raw in formats:
        return formats[raw]
    raise Invalid(f"attr_format must be one of {', '.join(ATTR_FORMATS)}; got {raw!r}")


def parse_bool(raw: str | None, name: str) -> bool:
    if raw is None or raw == "":
        return False
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise Invalid(f"query parameter {name} must be true or false, got {raw!r}")


def template_id(raw: object) -> int | None:
    """A template id from JSON or a URL (``1`` or ``"1"``); None when it is not one."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 19:
        raw = int(raw)
    if isinstance(raw, int) and 0 < raw < 2**63:
        return raw
    return None


def static_text(value: Any) -> str | None:
    """How an ``attr=label=value`` filter sees a static value: strings as they are, other JSON as JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "))


# -- parsing helpers ---------------------------------------------------------------------------------------
def _label(raw: object, name: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid(f"{name} is required and must be a non-empty string")
    if len(raw) > MAX_LABEL:
        raise Invalid(f"{name} must be at most {MAX_LABEL} characters")
    if "\x00" in raw:
        raise Invalid(f"{name} must not contain NUL characters")
    return raw


def _flag(raw: object, name: str) -> bool:
    if not isinstance(raw, bool):
        shown = json.dumps(raw)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise Invalid(f"{name} must be a JSON boolean (true or false), got {shown}", field=name)
    return raw


def _unique(labels: list[str], message: str) -> None:
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise Invalid(f"{message}: {label!r} is repeated", label=label)
        seen.add(label)


def _attr_list(body: dict[str, Any]) -> list[Any]:
    """``attrs``, or dojot's split form ``data_attrs`` + ``config_attrs`` (as its GUI sends them)."""
    if "attrs" in body and body["attrs"] is not None:
        raw = body["attrs"]
        if not isinstance(raw, list):
            raise Invalid("attrs must be a list of attribute objects")
        return raw
    out: list[Any] = []
    for key in ("data_attrs", "config_attrs"):
        part = body.get(key)
        if part is None:
            continue
        if not isinstance(part, list):
            raise Invalid(f"{key} must be a list of attribute objects")
        out.extend(part)
    return out


def _json_value(raw: object, where: str) -> Any:
    if raw is not None and not isinstance(raw, str | int | float | bool | dict | list):
        raise Invalid(f"{where} must be a JSON value")
    if isinstance(raw, str) and "\x00" in raw:
        raise Invalid(f"{where} must not contain NUL characters")
    return raw


def _optional_id(raw: dict[str, Any], where: str) -> int | None:
    if raw.get("id") is None:
        return None
    value = template_id(raw["id"])
    if value is None:
        raise Invalid(f"{where}.id must be a positive integer (an existing attribute id) when given")
    return value


def _attr(raw: object, index: int) -> AttrSpec:
    where = f"attrs[{index}]"
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be an object with label, type and value_type")
    label = _label(raw.get("label"), f"{where}.label")
    kind = raw.get("type")
    if kind not in ATTR_TYPES:
        raise Invalid(f"{where}.type must be one of {', '.join(ATTR_TYPES)}; got {kind!r}")
    value_type = raw.get("value_type")
    if value_type not in VALUE_TYPES:
        raise Invalid(f"{where}.value_type must be one of {', '.join(VALUE_TYPES)}; got {value_type!r}")
    static_value = _json_value(raw.get("static_value"), f"{where}.static_value")
    raw_meta = raw.get("metadata")
    if raw_meta is None:
        raw_meta = []
    if not isinstance(raw_meta, list):
        raise Invalid(f"{where}.metadata must be a list of meta attribute objects")
    metadata = tuple(_meta(m, f"{where}.metadata[{j}]") for j, m in enumerate(raw_meta))
    _unique([m.label for m in metadata], f"{where}.metadata labels must be unique")
    given = raw.get("metadata") is not None
    return AttrSpec(label, kind, value_type, static_value, metadata, _optional_id(raw, where), given)


def _meta(raw: object, where: str) -> MetaSpec:
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be an object with label and value_type")
    label = _label(raw.get("label"), f"{where}.label")
    kind = raw.get("type", "meta")
    if not isinstance(kind, str) or not kind.strip() or len(kind) > MAX_META_TYPE or "\x00" in kind:
        raise Invalid(
            f"{where}.type must be a non-empty string of at most {MAX_META_TYPE} characters "
            f"(any type: meta, lwm2m, mapping, ...); got {kind!r}"
        )
    value_type = raw.get("value_type")
    if value_type not in VALUE_TYPES:
        raise Invalid(f"{where}.value_type must be one of {', '.join(VALUE_TYPES)}; got {value_type!r}")
    static_value = _json_value(raw.get("static_value"), f"{where}.static_value")
    return MetaSpec(label, kind, value_type, static_value, _optional_id(raw, where))


def _ref(raw: dict[str, Any], where: str) -> int | str:
    if raw.get("id") is not None:
        ref = template_id(raw["id"])
        if ref is None:
            raise Invalid(f"Unknown attribute {raw['id']!r} in override list ({where}.id is not an attribute id)")
        return ref
    label = raw.get("label")
    if isinstance(label, str) and label:
        return label
    raise Invalid(f"{where} must name the attribute to override by id (or label)")


def _override(raw: dict[str, Any], template: int | None, where: str) -> OverrideSpec:
    if template is None and raw.get("template_id") is not None:
        # dojot's list shape names the template in each entry
        template = template_id(raw["template_id"])
        if template is None:
            raise Invalid(f"Unknown template {raw['template_id']!r} in attr list ({where}.template_id)")
    ref = _ref(raw, where)
    value = _json_value(raw.get("static_value"), f"{where}.static_value")
    raw_meta = raw.get("metadata") or []
    if not isinstance(raw_meta, list):
        raise Invalid(f"{where}.metadata must be a list")
    metadata: list[tuple[int | str, Any]] = []
    for j, m in enumerate(raw_meta):
        mwhere = f"{where}.metadata[{j}]"
        if not isinstance(m, dict):
            raise Invalid(f'{mwhere} must be an object such as {{"id": 3, "static_value": "x"}}')
        metadata.append((_ref(m, mwhere), _json_value(m.get("static_value"), f"{mwhere}.static_value")))
    return OverrideSpec(ref, template, value, tuple(metadata))


def _overrides(raw: object) -> tuple[OverrideSpec, ...]:
    """dojot's ``attrs`` of a device body: a list of ``{"template_id": .., "id": <attr id>, "label": ..,
    "static_value": .., "metadata": [{"id": <meta id>, "static_value": ..}]}``, or the shape GET returns,
    ``{"<template id>": [<such objects>]}``. Every entry needs its ``label``, as in dojot (checked first)."""
    entries: list[tuple[object, int | None, str]] = []
    if isinstance(raw, dict):
        for key, group in raw.items():
            tid = template_id(key)
            if tid is None:
                raise Invalid(f"Unknown template {key!r} in attr list (keys of attrs are template ids)")
            if not isinstance(group, list):
                raise Invalid(f"attrs[{key!r}] must be a list of attribute overrides")
            entries.extend((e, tid, f"attrs[{key!r}][{i}]") for i, e in enumerate(group))
    elif isinstance(raw, list):
        entries.extend((e, None, f"attrs[{i}]") for i, e in enumerate(raw))
    else:
        raise Invalid(
            'attrs must map template ids to attribute overrides: {"1": [{"id": 2, "label": "serial", '
            '"static_value": "x"}]}'
        )
    for entry, _, where in entries:
        if not isinstance(entry, dict):
            raise Invalid(f'{where} must be an object such as {{"id": 2, "label": "serial", "static_value": "x"}}')
        if entry.get("label") is None:
            raise MissingLabel(where)
    return tuple(_override(e, tid, where) for e, tid, where in entries if isinstance(e, dict))
