"""Domain types of the device manager, the parsing of request bodies into them and their dojot JSON shapes.

No I/O here. Shapes follow dojot v0.8.1 device-manager (apiary.apib and the tutorial).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ondas.errors import Invalid

ATTR_TYPES = ("dynamic", "static", "actuator", "meta")
# "geopoint" is how dojot's own examples spell geo:point; both are accepted.
VALUE_TYPES = ("integer", "float", "bool", "string", "geo:point", "geopoint", "object")
CONFIG_TYPES = frozenset({"meta"})
DEVICE_ID_RE = re.compile(r"^[0-9a-f]{2,6}$")
MAX_LABEL = 128
MAX_COUNT = 100


def iso(ts: datetime) -> str:
    """dojot's timestamp rendering: ``2018-01-25T12:30:42.164695+00:00``."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


# -- stored entities ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attr:
    id: int
    template_id: int
    label: str
    type: str
    value_type: str
    created: datetime
    static_value: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "template_id": str(self.template_id),
            "label": self.label,
            "type": self.type,
            "value_type": self.value_type,
            "created": iso(self.created),
        }
        if self.static_value is not None:
            out["static_value"] = self.static_value
        return out


@dataclass(frozen=True)
class Template:
    id: int
    label: str
    created: datetime
    attrs: tuple[Attr, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "created": iso(self.created),
            "attrs": [a.to_dict() for a in self.attrs],
            "data_attrs": [a.to_dict() for a in self.attrs if a.type not in CONFIG_TYPES],
            "config_attrs": [a.to_dict() for a in self.attrs if a.type in CONFIG_TYPES],
        }


@dataclass(frozen=True)
class Device:
    id: str
    label: str
    created: datetime
    templates: tuple[Template, ...] = ()

    @property
    def attrs(self) -> list[Attr]:
        return [a for t in self.templates for a in t.attrs]

    def actuators(self) -> set[str]:
        return {a.label for a in self.attrs if a.type == "actuator"}

    def to_dict(self) -> dict[str, Any]:
        """The device as dojot renders it in REST answers and in ``create``/``update`` events."""
        return {
            "id": self.id,
            "label": self.label,
            "created": iso(self.created),
            "templates": [t.id for t in self.templates],
            "attrs": {str(t.id): [a.to_dict() for a in t.attrs] for t in self.templates},
        }


@dataclass(frozen=True)
class Page:
    """One page of a listing; ``total`` counts pages, as dojot's pagination does."""

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
        }


# -- requests ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttrSpec:
    label: str
    type: str
    value_type: str
    static_value: Any = None


@dataclass(frozen=True)
class TemplateSpec:
    label: str
    attrs: tuple[AttrSpec, ...] = ()

    @classmethod
    def parse(cls, body: dict[str, Any]) -> TemplateSpec:
        label = _label(body.get("label"), "label")
        raw_attrs = body.get("attrs", [])
        if not isinstance(raw_attrs, list):
            raise Invalid("attrs must be a list of attribute objects")
        attrs = tuple(_attr(raw, i) for i, raw in enumerate(raw_attrs))
        seen: set[str] = set()
        for a in attrs:
            if a.label in seen:
                raise Invalid(f"attribute label {a.label!r} is repeated; attribute labels must be unique in a template")
            seen.add(a.label)
        return cls(label=label, attrs=attrs)


@dataclass(frozen=True)
class DeviceSpec:
    label: str
    templates: tuple[int, ...] = ()
    id: str | None = None

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
                raise Invalid(f"templates must hold template ids (integers), got {t!r}")
            if tid not in templates:
                templates.append(tid)
        overrides = body.get("attrs")
        if overrides not in (None, [], {}):
            raise Invalid("attribute overrides in attrs are not supported yet; remove attrs from the body")
        device_id = body.get("id")
        if device_id is not None:
            if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id.lower()):
                raise Invalid("Device ID must be 2-6 characters and must be hexadecimal (0-9,a-f,A-F)")
            device_id = device_id.lower()
        return cls(label=label, templates=tuple(templates), id=device_id)


def parse_actuation(body: dict[str, Any]) -> dict[str, Any]:
    attrs = body.get("attrs")
    if not isinstance(attrs, dict) or not attrs:
        raise Invalid('the body must be {"attrs": {"<actuator label>": <value>, ...}} with at least one attribute')
    return attrs


def template_id(raw: object) -> int | None:
    """A template id from JSON or a URL (``1`` or ``"1"``); None when it is not one."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 20:
        raw = int(raw)
    if isinstance(raw, int) and 0 < raw < 2**63:
        return raw
    return None


def _label(raw: object, name: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid(f"{name} is required and must be a non-empty string")
    if len(raw) > MAX_LABEL:
        raise Invalid(f"{name} must be at most {MAX_LABEL} characters")
    return raw


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
    static_value = raw.get("static_value")
    if static_value is not None and not isinstance(static_value, str | int | float | bool | dict | list):
        raise Invalid(f"{where}.static_value must be a JSON value")
    return AttrSpec(label=label, type=str(kind), value_type=str(value_type), static_value=static_value)


@dataclass(frozen=True)
class PageRequest:
    page: int = 1
    page_size: int = 20
    max_page_size: int = field(default=1000, repr=False)

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
