"""MQTT topics of a device (dojot v0.8.1, VerneMQ flavour): it publishes on ``<tenant>:<device-id>/attrs``
and receives on ``<tenant>:<device-id>/config``."""

from __future__ import annotations

from agents.core.payload import DeviceRef, Drop, parse_device

ATTRS = "attrs"
CONFIG = "config"


def parse_attrs_topic(topic: str) -> DeviceRef:
    """The device of an attrs topic ``<tenant>:<device-id>/attrs``."""
    identity, sep, kind = topic.partition("/")
    if not sep or kind != ATTRS:
        raise Drop("bad_topic", f"topic {topic!r} is not <tenant>:<device-id>/attrs")
    return parse_device(identity)


def attrs_topic(ref: DeviceRef) -> str:
    return f"{ref.username}/{ATTRS}"


def config_topic(ref: DeviceRef) -> str:
    return f"{ref.username}/{CONFIG}"
