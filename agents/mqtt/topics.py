"""MQTT topics of a device (dojot v0.8.1, VerneMQ flavour): it publishes on ``<tenant>:<device-id>/attrs``
and receives on ``<tenant>:<device-id>/config``. With legacy topics on (``MQTT_AGENT_LEGACY_TOPICS``), also
dojot's Mosca-era ``/<tenant>/<device-id>/attrs`` and ``/<tenant>/<device-id>/config``."""

from __future__ import annotations

from agents.core.payload import DeviceRef, Drop, parse_device

ATTRS = "attrs"
CONFIG = "config"


def topic_identity(topic: str) -> str:
    """The ``<tenant>:<device-id>`` an attrs topic names, in either form, unvalidated (for keys, shards and labels
    before :func:`parse_attrs_topic` judges the topic)."""
    if topic.startswith("/"):
        _, tenant, device, *_ = [*topic.split("/"), "", ""]
        return f"{tenant}:{device}"
    return topic.rpartition("/")[0]


def parse_attrs_topic(topic: str) -> DeviceRef:
    """The device of an attrs topic ``<tenant>:<device-id>/attrs`` or ``/<tenant>/<device-id>/attrs``."""
    if topic.startswith("/"):
        parts = topic.split("/")
        if len(parts) != 4 or parts[3] != ATTRS:
            raise Drop("bad_topic", f"topic {topic!r} is not /<tenant>/<device-id>/attrs")
        return parse_device(f"{parts[1]}:{parts[2]}")
    identity, sep, kind = topic.partition("/")
    if not sep or kind != ATTRS:
        raise Drop("bad_topic", f"topic {topic!r} is not <tenant>:<device-id>/attrs")
    return parse_device(identity)


def attrs_topic(ref: DeviceRef) -> str:
    return f"{ref.username}/{ATTRS}"


def config_topic(ref: DeviceRef) -> str:
    return f"{ref.username}/{CONFIG}"


def legacy_config_topic(ref: DeviceRef) -> str:
    return f"/{ref.tenant}/{ref.device_id}/{CONFIG}"
