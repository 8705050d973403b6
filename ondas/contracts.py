"""Wire contracts carried on Kafka, as typed and validated models.

- ``<tenant>.device-data``: :class:`DeviceData` (key = device id).
- ``<tenant>.dojot.device-manager.device``: :class:`DeviceEvent` (``create``, ``update``, ``remove``,
  ``configure``; key = device id).
- ``dojot-management.dojot.tenancy``: :class:`TenancyEvent` (key = tenant).
- ``<tenant>.device-liveness``: :class:`DeviceLiveness` (key = device id; an Ondas subject, not dojot's).
- ``<tenant>.dojot.notifications``: :class:`Notification` (dojot's notification; key = device id).

The JSON shapes follow dojot v0.8.1 exactly; see docs/kafka-contract.md.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ondas.tenant import validate_tenant
from ondas.timestamps import parse_timestamp


class ContractError(ValueError):
    """A message does not follow its contract. The message says what is wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), separators=(",", ":")).encode()


_M = TypeVar("_M", bound=_Model)


def _load(model: type[_M], raw: bytes | str | dict[str, Any]) -> _M:
    try:
        data = json.loads(raw) if isinstance(raw, bytes | str) else raw
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ContractError(f"{where}: {first['msg']}") from exc


class DeviceDataMeta(_Model):
    deviceid: str = Field(min_length=1)
    tenant: str
    timestamp: int

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        return validate_tenant(v)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _ts(cls, v: object) -> int:
        return parse_timestamp(v)


class DeviceData(_Model):
    metadata: DeviceDataMeta
    attrs: dict[str, Any]

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any]) -> DeviceData:
        return _load(cls, raw)


LivenessEvent = Literal["online", "offline"]


class DeviceLiveness(_Model):
    """A device came online or went offline. ``reason`` says why (see docs/kafka-contract.md), ``protocol``
    which agent saw it (``mqtt``, later ``http`` and ``lwm2m``)."""

    metadata: DeviceDataMeta
    event: LivenessEvent
    reason: str = Field(min_length=1)
    protocol: str = Field(min_length=1)

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any]) -> DeviceLiveness:
        return _load(cls, raw)


class Notification(_Model):
    """dojot's notification (a flow's notification node, or any producer): ``msgID`` identifies it (optional for
    other producers), ``timestamp`` is when it was raised, ``metaAttrsFilter`` carries its attributes and
    ``shouldPersist`` (false: history does not store it)."""

    msgID: str | None = Field(default=None, min_length=1)
    timestamp: int
    message: str
    metaAttrsFilter: dict[str, Any] = Field(default_factory=dict)
    subject: str = "user_notification"

    @field_validator("timestamp", mode="before")
    @classmethod
    def _ts(cls, v: object) -> int:
        return parse_timestamp(v)

    @property
    def should_persist(self) -> bool:
        return self.metaAttrsFilter.get("shouldPersist", True) is not False

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any]) -> Notification:
        return _load(cls, raw)


class EventMeta(_Model):
    service: str
    timestamp: int | None = None

    @field_validator("service")
    @classmethod
    def _tenant(cls, v: str) -> str:
        return validate_tenant(v)


DeviceEventKind = Literal["create", "update", "remove", "configure"]


class DeviceEvent(_Model):
    """``data`` holds the device (create/update), ``{"id"}`` (remove) or ``{"id","attrs"}`` (configure)."""

    event: DeviceEventKind
    meta: EventMeta
    data: dict[str, Any]

    @field_validator("data")
    @classmethod
    def _has_id(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(v.get("id"), str) or not v["id"]:
            raise ValueError("data.id must be a non-empty string")
        return v

    @property
    def tenant(self) -> str:
        return self.meta.service

    @property
    def device_id(self) -> str:
        return str(self.data["id"])

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any]) -> DeviceEvent:
        ev = _load(cls, raw)
        if ev.event == "configure" and not isinstance(ev.data.get("attrs"), dict):
            raise ContractError("data.attrs: a configure event carries an attrs object")
        return ev

    @classmethod
    def created(cls, tenant: str, device: dict[str, Any]) -> DeviceEvent:
        return cls(event="create", meta=EventMeta(service=tenant), data=device)

    @classmethod
    def updated(cls, tenant: str, device: dict[str, Any]) -> DeviceEvent:
        return cls(event="update", meta=EventMeta(service=tenant), data=device)

    @classmethod
    def removed(cls, tenant: str, device_id: str) -> DeviceEvent:
        return cls(event="remove", meta=EventMeta(service=tenant), data={"id": device_id})

    @classmethod
    def configure(cls, tenant: str, device_id: str, attrs: dict[str, Any], timestamp_ms: int) -> DeviceEvent:
        return cls(
            event="configure",
            meta=EventMeta(service=tenant, timestamp=timestamp_ms),
            data={"id": device_id, "attrs": attrs},
        )


class TenancyEvent(_Model):
    type: Literal["CREATE", "DELETE"]
    tenant: str

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        return validate_tenant(v)

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any]) -> TenancyEvent:
        return _load(cls, raw)
